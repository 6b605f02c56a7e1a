"""The demo command end to end on a small data set, and its refusals (nothing is lost)."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

DEMO = os.path.join(os.path.dirname(sys.executable), 'redprior_demo')
SMALL = ['--particles', '150', '--box', '32', '--pixel', '4', '--snr', '0.5']


def runDemo(root, *args, timeout=1500):
    # as a user runs it: no Scipion settings inherited from the test run
    env = {k: v for k, v in os.environ.items() if not k.startswith('SCIPION_')}
    env['REDPRIOR_SCIPION_ROOT'] = root
    return subprocess.run([DEMO] + list(args), cwd=root, env=env, capture_output=True,
                          text=True, timeout=timeout)


class TestDemo(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.mkdtemp(prefix='redprior_demo_test_')
        cls.out = os.path.join(cls.root, 'report')
        cls.demo = runDemo(cls.root, '--out', cls.out, *SMALL)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.root, ignore_errors=True)

    def _summary(self):
        self.assertEqual(self.demo.returncode, 0, self.demo.stdout[-3000:] + self.demo.stderr[-3000:])
        with open(os.path.join(self.out, 'summary.json')) as fh:
            return json.load(fh)

    def test_report_numbers_are_the_validation_numbers(self):
        s = self._summary()
        self.assertEqual([r['method'] for r in s['refinements']], ['gaussian', 'cwred'])
        for r in s['refinements']:
            with open(os.path.join(os.path.dirname(r['validation']['report']),
                                   'validation.json')) as fh:
                v = json.load(fh)
            half = v['curves']['half_corrected']['resolution']['0.143']
            truth = v['curves']['gt_masked']['resolution']
            self.assertEqual((r['halfmap_resolution_0143'], r['halfmap_resolution_text']),
                             (half['limit_A'], half['text']))
            self.assertEqual(r['gt_resolution_05_text'], truth['0.5']['text'])
            # never beyond Nyquist, and said so when the curve never crosses
            self.assertGreaterEqual(r['gt_resolution_0143'], 2 * 4.0)
            if not truth['0.143']['crossed']:
                self.assertIn('never crosses', r['gt_resolution_0143_text'])
            self.assertTrue(0.0 < r['gt_fsc_mean'] <= 1.0)
            self.assertGreater(r['iterations'], 2)
        page = open(os.path.join(self.out, 'index.html')).read()
        for r in s['refinements']:
            self.assertIn(r['halfmap_resolution_text'], page)
        for name in ('fsc.png', 'slices.png', 'lambda.png'):
            self.assertGreater(os.path.getsize(os.path.join(self.out, name)), 5000)
        # the console followed each refinement's iterations
        self.assertRegex(self.demo.stdout, r'iteration \d+ half 1: resolution [\d.]+ Å, lambda')

    def test_existing_project_is_kept(self):
        self._summary()
        project = json.load(open(os.path.join(self.out, 'summary.json')))['project']
        mine = os.path.join(project, 'my_notes.txt')
        with open(mine, 'w') as fh:
            fh.write('mine')
        # the project was made under the default name; giving that name again is refused
        again = runDemo(self.root, '--out', self.out, '--project', 'redprior_demo', *SMALL,
                        timeout=300)
        self.assertNotEqual(again.returncode, 0)
        self.assertIn("already exists", again.stderr)
        self.assertIn('--replace', again.stderr)
        self.assertTrue(os.path.exists(mine))


class TestDemoProjectNames(unittest.TestCase):
    def test_default_name_never_clobbers(self):
        from redprior.demo import free_project_name
        taken = {'redprior_demo', 'redprior_demo_2'}
        self.assertEqual(free_project_name(taken.__contains__), 'redprior_demo_3')
        self.assertEqual(free_project_name(set().__contains__), 'redprior_demo')


class TestDemoRefusals(unittest.TestCase):
    def test_bad_options_are_refused_before_anything_runs(self):
        root = tempfile.mkdtemp(prefix='redprior_demo_bad_')
        try:
            out = runDemo(root, '--project', 'bad', '--mpi', '2', '--snr', '-1', timeout=300)
            self.assertNotEqual(out.returncode, 0)
            self.assertIn('--mpi 2', out.stderr)
            self.assertIn('--mpi 3 or more', out.stderr)
            self.assertIn('The SNR must be a positive number', out.stderr)
            projects = os.path.join(root, 'ScipionUserData', 'projects')
            self.assertFalse(os.path.exists(os.path.join(projects, 'bad')))
        finally:
            shutil.rmtree(root, ignore_errors=True)
