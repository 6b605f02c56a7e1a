"""'simulate particles': ground truth, initial model and noisy particles with true poses.

The numerics live in redprior.core (simulation.structure, simulation.particles,
simulation.limits, io.star_particles); this protocol only handles the form, the files of the
run and the Scipion outputs.
"""
import os

import pyworkflow.protocol.params as params
from pyworkflow import BETA
from pwem.objects import SetOfParticles, Volume
from pwem.protocols import EMProtocol

from redprior import Plugin
from redprior import constants as C


class ProtRedPriorSimulate(EMProtocol):
    """Simulate a cryo-EM single-particle data set from an atomic model or a map.

    Writes the ground-truth map, a low-pass filtered initial model and particles (RELION 3.1
    STAR + MRC stack) with uniformly random orientations, white Gaussian noise at a chosen
    SNR (or intensity scale) and optionally a CTF. The true poses and CTF are kept in the
    output particles (3D projection alignment), so refinements can be scored against them.
    """
    _label = 'simulate particles'
    _devStatus = BETA
    _possibleOutputs = {'outputVolume': Volume,
                        'outputInitialModel': Volume,
                        'outputParticles': SetOfParticles}

    # ------------------------------------------------------------------ form
    def _defineParams(self, form):
        form.addSection(label='Input')
        form.addParam('inputSource', params.EnumParam, choices=C.SOURCE_CHOICES,
                      default=C.SOURCE_ATOMSTRUCT, display=params.EnumParam.DISPLAY_HLIST,
                      label='Ground truth from',
                      help='An atomic model is turned into its electron scattering potential '
                           '(gemmi, electron form factors). A volume is used as it is.')
        form.addParam('inputAtomStruct', params.PointerParam, pointerClass='AtomStruct',
                      condition='inputSource == %d' % C.SOURCE_ATOMSTRUCT, important=True,
                      label='Atomic model',
                      help='PDB/mmCIF model; waters, ligands and hydrogens are removed. Its '
                           'centre of mass is placed at the box centre.')
        form.addParam('inputVolume', params.PointerParam, pointerClass='Volume',
                      condition='inputSource == %d' % C.SOURCE_VOLUME, important=True,
                      label='Volume',
                      help='A centred, cubic map with an even box; its box and sampling '
                           'rate are used.')
        form.addParam('boxSize', params.IntParam, default=64,
                      condition='inputSource == %d' % C.SOURCE_ATOMSTRUCT,
                      label='Box size (px)',
                      help='Even number of pixels of the maps and particles. The model '
                           'must fit in it (validation tells the minimum).')
        form.addParam('pixelSize', params.FloatParam, default=2.0,
                      condition='inputSource == %d' % C.SOURCE_ATOMSTRUCT,
                      label='Pixel size (Å)',
                      help='Nyquist resolution is twice this value.')
        form.addParam('numberOfParticles', params.IntParam, default=1000,
                      validators=[params.GE(1)], label='Number of particles')

        form.addSection(label='Noise and CTF')
        form.addParam('noiseMode', params.EnumParam, choices=C.NOISE_CHOICES,
                      default=C.NOISE_BY_SNR, display=params.EnumParam.DISPLAY_HLIST,
                      label='Noise given by',
                      help='SNR: noise sigma chosen so that the mean per-pixel variance of '
                           'the clean (CTF-modulated) images divided by the noise variance '
                           'equals the target (the definition of Kimanius et al. 2021).\n'
                           'Scale factor: clean images are multiplied by the factor and unit '
                           'noise is added (as in the paper, which used 0.010-0.014 on EMAN '
                           'maps). The wizard converts one into the other.')
        form.addParam('snr', params.FloatParam, default=0.05,
                      condition='noiseMode == %d' % C.NOISE_BY_SNR,
                      label='Signal-to-noise ratio',
                      help='Per-pixel variance ratio. Kimanius et al. used 0.0003-0.01.')
        form.addParam('scaleFactor', params.FloatParam, default=0.25,
                      condition='noiseMode == %d' % C.NOISE_BY_SCALE,
                      label='Intensity scale factor',
                      help='Multiplies the clean images before unit-variance noise is added.')
        form.addParam('doCtf', params.BooleanParam, default=True, label='Apply a CTF?',
                      help='Phase-flipping-free RELION CTF (defocus drawn uniformly per '
                           'particle, small astigmatism). The CTF is stored with the particles.')
        form.addParam('defocusMin', params.FloatParam, default=5000.0, condition='doCtf',
                      label='Minimum defocus (Å)')
        form.addParam('defocusMax', params.FloatParam, default=20000.0, condition='doCtf',
                      label='Maximum defocus (Å)')
        form.addParam('voltage', params.FloatParam, default=300.0, condition='doCtf',
                      label='Voltage (kV)')
        form.addParam('sphericalAberration', params.FloatParam, default=2.7,
                      condition='doCtf', label='Spherical aberration (mm)')
        form.addParam('amplitudeContrast', params.FloatParam, default=0.1,
                      condition='doCtf', label='Amplitude contrast (Q0)')

        form.addSection(label='Other')
        form.addParam('maxShift', params.FloatParam, default=0.0, validators=[params.GE(0)],
                      label='Maximum shift (Å)',
                      help='Particles are translated by a uniform random shift in '
                           '[-max, max] A per axis (stored as rlnOriginX/YAngst).')
        form.addParam('initialLowpass', params.FloatParam, default=30.0,
                      label='Initial model low-pass (Å)',
                      help='The initial model for refinement is the ground truth low-pass '
                           'filtered to this resolution (30 A in Kimanius et al.).')
        form.addParam('seed', params.IntParam, default=0, validators=[params.GE(0)],
                      label='Random seed', help='Same seed and settings, same data set.')

    # ------------------------------------------------------------------ steps
    def _insertAllSteps(self):
        self._insertFunctionStep(self.prepareMapsStep, needsGPU=False)
        self._insertFunctionStep(self.simulateStep, needsGPU=False)
        self._insertFunctionStep(self.createOutputStep, needsGPU=False)

    def prepareMapsStep(self):
        vol, pixel, info = self.computeGroundTruth()
        from redprior.core.fourier import filters as fourier
        from redprior.core.io import mrc as mrcio
        box = vol.shape[0]
        self.info(f"Ground truth: box {box} px, {pixel:g} A/px, source {info.get('source')}")
        mrcio.write_map(self._getExtraPath(C.SIM_GROUND_TRUTH), vol, pixel)
        init = fourier.lowpass(vol, pixel, self.initialLowpass.get())
        mrcio.write_map(self._getExtraPath(C.SIM_INITIAL_MODEL), init, pixel)
        self.info(f"Initial model: ground truth low-pass filtered to "
                  f"{self.initialLowpass.get():g} A")
        self._writeJson(dict(info, box=box, pixel_size=pixel))

    def simulateStep(self):
        from redprior.core.io import mrc as mrcio
        from redprior.core.io import star_particles as particles_star
        from redprior.core.simulation import particles as simulate
        vol, pixel = mrcio.read_map(self._getExtraPath(C.SIM_GROUND_TRUTH))
        n = self.numberOfParticles.get()
        ctf = self.getCtfSettings()
        noise = self.getNoiseKwargs()
        self.info(f"Simulating {n} particles ({', '.join('%s=%g' % kv for kv in noise.items())}"
                  f", CTF {'on' if ctf else 'off'}, max shift {self.maxShift.get():g} A, "
                  f"seed {self.seed.get()})")
        sim = simulate.simulate_particles(vol, pixel, n, ctf=ctf,
                                          max_shift_A=self.maxShift.get(),
                                          seed=self.seed.get(), **noise)
        self.info(f"Measured SNR {sim.snr_measured:.5g} (requested "
                  f"{sim.snr_requested if sim.snr_requested is not None else '-'}), "
                  f"noise sigma {sim.noise_sigma:.5g}")
        star = particles_star.write_particles(sim, pixel, self._getExtraPath(),
                                              name=C.SIM_PARTICLES_NAME)
        self.info(f"Particles written to {star}")
        info = self.getResults()
        info.update(particles=len(sim), snr_requested=sim.snr_requested,
                    snr_measured=sim.snr_measured, scale=sim.scale,
                    noise_sigma=sim.noise_sigma, ctf=sim.ctf,
                    max_shift_A=self.maxShift.get(), seed=self.seed.get(),
                    initial_lowpass_A=self.initialLowpass.get(),
                    star=os.path.basename(star))
        self._writeJson(info)

    def createOutputStep(self):
        info = self.getResults()
        pixel = float(info['pixel_size'])

        truth = Volume(location=self._getExtraPath(C.SIM_GROUND_TRUTH))
        truth.setSamplingRate(pixel)
        init = Volume(location=self._getExtraPath(C.SIM_INITIAL_MODEL))
        init.setSamplingRate(pixel)
        init.setObjComment('ground truth low-passed to %g A' % info['initial_lowpass_A'])

        parts = self._createSetOfParticles()
        self._readParticles(self._getExtraPath(info['star']), parts, pixel)
        self.info(f"Output particles: {parts.getSize()}, alignment {parts.getAlignment()}, "
                  f"CTF {parts.hasCTF()}")

        self._defineOutputs(outputVolume=truth, outputInitialModel=init,
                            outputParticles=parts)
        source = self._getSourcePointer()
        for out in (truth, init, parts):
            self._defineSourceRelation(source, out)

    def _readParticles(self, star, parts, pixel):
        from redprior.convert import readParticlesStar
        readParticlesStar(star, parts, pixel)
        if not self.doCtf.get():
            parts.setHasCTF(False)
            # the STAR's optics then hold placeholders; keep the form's microscope instead
            acq = parts.getAcquisition()
            acq.setVoltage(self.voltage.get())
            acq.setSphericalAberration(self.sphericalAberration.get())
            acq.setAmplitudeContrast(self.amplitudeContrast.get())

    # ------------------------------------------------------------------ helpers
    def _getSourcePointer(self):
        return (self.inputAtomStruct if self.inputSource.get() == C.SOURCE_ATOMSTRUCT
                else self.inputVolume)

    def _atomStructPath(self):
        obj = self.inputAtomStruct.get()
        return obj.getFileName() if obj is not None else None

    def _volumePath(self):
        obj = self.inputVolume.get()
        if obj is None:
            return None
        from redprior.convert import volumePath
        return volumePath(obj)

    def getCtfSettings(self):
        """CTF dict for core.simulation.particles, or None when no CTF is simulated."""
        if not self.doCtf.get():
            return None
        return dict(defocus_min_A=self.defocusMin.get(), defocus_max_A=self.defocusMax.get(),
                    voltage=self.voltage.get(), cs=self.sphericalAberration.get(),
                    amp_contrast=self.amplitudeContrast.get())

    def getNoiseKwargs(self):
        if self.noiseMode.get() == C.NOISE_BY_SNR:
            return dict(snr=self.snr.get())
        return dict(scale=self.scaleFactor.get())

    def getBoxAndPixel(self):
        """(box, pixel size) of the simulation, from the form or from the input volume."""
        if self.inputSource.get() == C.SOURCE_VOLUME:
            vol = self.inputVolume.get()
            return vol.getXDim(), vol.getSamplingRate()
        return self.boxSize.get(), self.pixelSize.get()

    def computeGroundTruth(self):
        """(map float32 (z,y,x), pixel size, info dict) from the current input.

        Used by the steps and by the SNR <-> scale wizard, so both see the same map.
        """
        from redprior.core.simulation import structure
        if self.inputSource.get() == C.SOURCE_ATOMSTRUCT:
            path = self._atomStructPath()
            box, pixel = self.getBoxAndPixel()
            st = structure.read_structure(path)
            summary = structure.structure_summary(st)
            vol = structure.potential_map(st, box, pixel)
            return vol, float(pixel), dict(source='atomic model', source_file=path,
                                           model=summary)
        from redprior.convert import readCube
        path = self._volumePath()
        vol, header_pixel = readCube(path, self._getTmpPath())
        pixel = float(self.inputVolume.get().getSamplingRate() or header_pixel)
        return vol, pixel, dict(source='volume', source_file=path)

    def getResults(self):
        """Contents of extra/simulation.json ({} before the run wrote it)."""
        from redprior.core.io.jsonfile import read_json
        return read_json(self._getExtraPath(C.SIM_JSON))

    def _writeJson(self, info):
        from redprior.core.io.jsonfile import write_json
        write_json(self._getExtraPath(C.SIM_JSON), info, indent=2)

    # ------------------------------------------------------------------ info
    @classmethod
    def validateInstallation(cls):
        # Simulation is pure Python: do not inherit the plugin's RELION/TensorFlow check,
        # which would block this protocol on machines without RELION.
        return Plugin.missingPythonPackages('finufft', 'gemmi', 'mrcfile')

    def _validate(self):
        from redprior.core.simulation.limits import simulation_problems
        errors = []
        if self.inputSource.get() == C.SOURCE_VOLUME:
            errors += self._validateVolume()
        try:
            box, pixel = self.getBoxAndPixel()
        except Exception:  # no volume chosen yet
            return errors
        bySnr = self.noiseMode.get() == C.NOISE_BY_SNR
        errors += simulation_problems(box, pixel, self.numberOfParticles.get(),
                                      snr=self.snr.get() if bySnr else None,
                                      scale=None if bySnr else self.scaleFactor.get(),
                                      initial_lowpass=self.initialLowpass.get())
        if self.doCtf.get():
            dmin, dmax = self.defocusMin.get(), self.defocusMax.get()
            if not (dmin and dmax and 0 < dmin <= dmax):
                errors.append(f'Defocus range must satisfy 0 < minimum <= maximum '
                              f'(got {dmin}..{dmax} A).')
            if not 0 <= self.amplitudeContrast.get() < 1:
                errors.append('Amplitude contrast must be in [0, 1).')
            if self.voltage.get() <= 0:
                errors.append('Voltage must be > 0 kV.')
        if (not errors and self.inputSource.get() == C.SOURCE_ATOMSTRUCT
                and self.inputAtomStruct.get() is not None):
            errors += self._validateFit(box, pixel)
        return errors

    def _validateVolume(self):
        vol = self.inputVolume.get()
        if vol is None:
            return []
        x, y, z = vol.getDim()
        if not (x == y == z):
            return [f'The volume must be cubic (got {x}x{y}x{z}).']
        if not vol.getSamplingRate() or vol.getSamplingRate() <= 0:
            return ['The volume has no sampling rate; set it on import.']
        return []

    def _validateFit(self, box, pixel):
        from redprior.core.simulation.structure import fit_problems
        return fit_problems(self._atomStructPath(), box, pixel)

    def _summary(self):
        info = self.getResults()
        if 'snr_measured' not in info:
            box, pixel = (None, None)
            try:
                box, pixel = self.getBoxAndPixel()
            except Exception:  # input not set yet
                pass
            return [f'Will simulate {self.numberOfParticles.get()} particles '
                    f'(box {box}, {pixel} A/px).']
        lines = [f"{info['particles']} particles, box {info['box']} px, "
                 f"{info['pixel_size']:g} A/px (Nyquist {2 * info['pixel_size']:g} A)",
                 f"Measured SNR: {info['snr_measured']:.4g}"
                 + (f" (requested {info['snr_requested']:g})"
                    if info.get('snr_requested') is not None else
                    f" (scale factor {info['scale']:g}, unit noise)"),
                 f"Noise sigma: {info['noise_sigma']:.4g}"]
        ctf = info.get('ctf')
        lines.append('CTF: defocus %g-%g A, %g kV, Cs %g mm, Q0 %g'
                     % (ctf['defocus_min_A'], ctf['defocus_max_A'], ctf['voltage'],
                        ctf['cs'], ctf['amp_contrast']) if ctf else 'CTF: none')
        model = info.get('model')
        if model:
            lines.append(f"Model: {model['chains']} chains, {model['residues']} residues, "
                         f"{model['mass_kda']:.1f} kDa")
        return lines

    def _methods(self):
        info = self.getResults()
        if 'snr_measured' not in info:
            return []
        src = ('the electron scattering potential of an atomic model (computed with gemmi)'
               if info.get('source') == 'atomic model' else 'a 3D map')
        ctf = info.get('ctf')
        text = (f"{info['particles']} projection images of {info['box']} x {info['box']} "
                f"pixels ({info['pixel_size']:g} A/pixel) were simulated from {src} in "
                f"uniformly random orientations, ")
        text += ('with a CTF (defocus %g-%g A, %g kV, Cs %g mm, amplitude contrast %g), '
                 % (ctf['defocus_min_A'], ctf['defocus_max_A'], ctf['voltage'], ctf['cs'],
                    ctf['amp_contrast']) if ctf else 'without a CTF, ')
        text += (f"and white Gaussian noise giving a measured SNR of "
                 f"{info['snr_measured']:.4g} (per-pixel signal variance over noise variance, "
                 f"as in Kimanius et al. 2021). The initial model was the ground truth low-pass "
                 f"filtered to {info['initial_lowpass_A']:g} A.")
        return [text]

    def _citations(self):
        return ['Kimanius2021']
