"""relion_refine arguments and the hook command: built once, accepted by the real programs."""
import subprocess
import unittest

from redprior.core.prior.options import build_parser, hook_args, hook_command
from redprior.core.relion.command import RefineSettings, continue_args, refine_args


class TestRefineArgs(unittest.TestCase):
    def test_auto_refine_with_ctf_and_extra(self):
        s = RefineSettings(output_root='out/run', particles_star='p.star', reference='r.mrc',
                           mask_diameter_A=115.2, ctf=True, extra='--maxsig 5')
        args = refine_args(s)
        joined = ' '.join(args)
        self.assertIn('--auto_refine --split_random_halves --low_resol_join_halves 40', joined)
        self.assertIn('--particle_diameter 115.2', joined)
        self.assertIn('--ctf --ctf_corrected_ref', joined)
        self.assertEqual(args[-2:], ['--maxsig', '5'])
        self.assertIn('--external_reconstruct', args)

    def test_fixed_iterations_without_hook(self):
        s = RefineSettings(output_root='o', particles_star='p.star', reference='r.mrc',
                           mask_diameter_A=90, auto_refine=False, iterations=7,
                           external_reconstruct=False)
        args = refine_args(s)
        self.assertNotIn('--split_random_halves', args)
        self.assertNotIn('--external_reconstruct', args)
        self.assertEqual(args[args.index('--iter') + 1], '7')

    def test_continue_keeps_the_hook(self):
        args = continue_args('x/run_it004_optimiser.star', 'x/run_ct4', 2)
        self.assertEqual(args[:2], ['--continue', 'x/run_it004_optimiser.star'])
        self.assertIn('--external_reconstruct', args)


class TestHookCommand(unittest.TestCase):
    def test_hook_args_parse_back_to_the_same_settings(self):
        args = hook_args('cwred', 2.0, '/tmp/log', model='/m dir/m.keras', red_lambda=0.5,
                         cw_low=12, cw_high=6, worker='/tmp/s.sock', keep=True,
                         prior_up_to=8, lowpass_reference=True)
        ns = build_parser().parse_args(args + ['x.star'])
        self.assertEqual((ns.mode, ns.angpix, ns.model, ns.lam, ns.cw_low, ns.cw_high),
                         ('cwred', 2.0, '/m dir/m.keras', 0.5, 12.0, 6.0))
        self.assertEqual((ns.prior_up_to, ns.lowpass_reference, ns.keep), (8.0, True, True))
        self.assertFalse(build_parser().parse_args(['x.star']).lowpass_reference)
        self.assertEqual(ns.worker, '/tmp/s.sock')

    def test_gaussian_needs_no_model(self):
        ns = build_parser().parse_args(hook_args('gaussian', 1.5, 'l.jsonl') + ['x.star'])
        self.assertEqual((ns.mode, ns.model), ('gaussian', None))
        # the Gaussian prior stays RELION's own: a prior's options do not reach it
        # (the prior-bias test's control refines with the refinement's options)
        ns = build_parser().parse_args(hook_args('gaussian', 1.5, 'l.jsonl', lowpass_reference=True,
                                                 cap_at_resolution=True) + ['x.star'])
        self.assertEqual((ns.lowpass_reference, ns.cap_at_resolution), (False, False))

    def test_command_runs_through_a_shell_as_relion_runs_it(self):
        # RELION appends the STAR path and runs the string through the shell
        cmd = hook_command(hook_args('gaussian', 2.0, '/tmp/a b.jsonl')) + ' --help'
        out = subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=120)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn('usage: redprior_exrecon', out.stdout)


class TestScheduleHistory(unittest.TestCase):
    def test_one_series_per_iteration_from_the_hook_log(self):
        """The viewer, the summary and the demo show lambda next to the resolution it was
        computed from: the mean over the halves of the hook's records, errors left out."""
        from redprior.core.prior.history import history_rows, schedule_history

        log = [{'iteration': 1, 'half': 1, 'resolution': 10.0, 'lambda': 0.0},
               {'iteration': 1, 'half': 2, 'resolution': 9.0, 'lambda': 0.2},
               {'error': 'redprior_exrecon failed on x.star'},
               {'iteration': 2, 'half': 0, 'resolution': None, 'lambda': 1.0}]
        hist = schedule_history(history_rows(log))
        self.assertEqual([h[0] for h in hist], [1, 2])
        self.assertAlmostEqual(hist[0][1], 9.5)
        self.assertAlmostEqual(hist[0][2], 0.1)
        self.assertNotEqual(hist[1][1], hist[1][1])  # no resolution: NaN, not a number
        self.assertEqual(hist[1][2], 1.0)

    def test_caution_only_where_a_learned_prior_acted(self):
        """The summary warns that the half-map FSC is not independent once lambda > 0, with
        the largest lambda; a run at lambda 0 throughout (Gaussian, or CW-RED that never
        reached its ramp) gets no such line."""
        from redprior.core.prior.history import prior_caution

        self.assertIsNone(prior_caution([[1, 1, 12.0, 0.0], [1, 2, 12.5, 0.0]]))
        self.assertIsNone(prior_caution([]))
        text = prior_caution([[1, 1, 12.0, 0.0], [2, 1, 9.0, 0.27], [2, 2, 9.5, 0.2]])
        self.assertIn('lambda up to 0.27', text)
        self.assertIn("'resolution and validation report'", text)
