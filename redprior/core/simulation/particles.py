"""Simulated cryo-EM particles: RELION-convention projections, CTF and white noise.

Pure numpy + finufft (no Scipion).

Conventions (all RELION 3.1):
  * maps are cubic, array axes (z, y, x), origin at voxel N//2; images are (y, x), origin
    at pixel N//2;
  * Euler angles (rot, tilt, psi) in degrees, ZYZ, A = Rz(psi) Ry(tilt) Rz(rot) with RELION's
    signs; the projection image is the volume rotated by A and summed along z, i.e. its
    Fourier transform is V(A^T (kx, ky, 0));
  * rlnOriginX/YAngst is the shift that re-centres a particle: an image is the centred
    projection translated by -origin;
  * the CTF is RELION's: -sin(chi), chi = pi*lambda*dF*k^2 ... - atan(Q0/sqrt(1-Q0^2)) with
    dF negative for underfocus as RELION stores it internally, which is positive at k=0.
"""
from dataclasses import dataclass

import numpy as np

from redprior.core.fourier.grid import frequency_axes
from redprior.core.geometry.euler import euler_to_matrix, uniform_rotations

try:  # only projections need finufft; keep the rest of the module importable without it
    import finufft
except ImportError:  # pragma: no cover - reported when a projection is asked for
    finufft = None

NUFFT_EPS = 1e-7


# ---------------------------------------------------------------------------------------
# Fourier slicing
# ---------------------------------------------------------------------------------------
def _check_volume(volume):
    if volume.ndim != 3 or len(set(volume.shape)) != 1:
        raise ValueError(f"Projection needs a cubic 3D volume, got shape {volume.shape}.")
    if not np.all(np.isfinite(volume)):
        raise ValueError("The volume to project contains NaN or infinite values.")


def _volume_plan(volume, eps):
    _check_volume(volume)
    if finufft is None:
        raise ImportError("finufft is needed for projections: pip install finufft")
    n = volume.shape[0]
    # Type 2 NUFFT: c_j = sum_r v(r) exp(-i r.x_j). finufft's modes run from -n//2 on each
    # axis, exactly the voxel offsets from RELION's centre n//2, so v is passed as is.
    plan = finufft.Plan(2, (n, n, n), eps=eps, isign=-1, dtype="complex128", modeord=0)
    return plan, np.ascontiguousarray(volume, dtype=np.complex128)


def fourier_slices(volume, R, eps=NUFFT_EPS, batch=256, _plan=None):
    """Central slices V(R^T (kx, ky, 0)) of a centred volume, rfft2 layout (n, N, N//2+1).

    The values are the 2D DFT of the projection with its origin at pixel N//2, in np.fft
    order along ky and kx = 0..N//2. Frequencies outside the circle |k| <= N/2 are set to
    zero, as in RELION's projector.
    """
    volume = np.asarray(volume)
    _check_volume(volume)
    n = volume.shape[0]
    R = np.asarray(R, dtype=np.float64).reshape(-1, 3, 3)
    KY, KX = frequency_axes(n, 2)
    inside = (KX ** 2 + KY ** 2) <= (n / 2.0) ** 2
    kx, ky = KX[inside], KY[inside]
    plan, coeffs = _plan if _plan is not None else _volume_plan(volume, eps)
    out = np.zeros((len(R), n, n // 2 + 1), dtype=np.complex128)
    scale = 2.0 * np.pi / n
    for start in range(0, len(R), batch):
        Rb = R[start:start + batch]
        # 3D frequency (x, y, z) = R^T (kx, ky, 0): row j of R^T is column j of R
        fx = Rb[:, 0, 0, None] * kx + Rb[:, 1, 0, None] * ky
        fy = Rb[:, 0, 1, None] * kx + Rb[:, 1, 1, None] * ky
        fz = Rb[:, 0, 2, None] * kx + Rb[:, 1, 2, None] * ky
        # volume axes are (z, y, x): the first NUFFT coordinate pairs with z
        plan.setpts(np.ascontiguousarray(fz.ravel() * scale),
                    np.ascontiguousarray(fy.ravel() * scale),
                    np.ascontiguousarray(fx.ravel() * scale))
        vals = plan.execute(coeffs).reshape(len(Rb), -1)
        out[start:start + len(Rb)][:, inside] = vals
    return out


def shift_phases(n, shifts_px):
    """Phase factors (m, N, N//2+1) that translate centred images by shifts_px (m, 2) = (x, y)."""
    KY, KX = frequency_axes(n, 2)
    sx = np.asarray(shifts_px, dtype=np.float64)[:, 0, None, None]
    sy = np.asarray(shifts_px, dtype=np.float64)[:, 1, None, None]
    return np.exp(-2j * np.pi * (KX * sx + KY * sy) / n)


def _to_real(ft, n):
    return np.fft.fftshift(np.fft.irfft2(ft, s=(n, n)), axes=(-2, -1)).astype(np.float32)


def project(volume, rot, tilt, psi, shifts_A=None, pixel_size=1.0, eps=NUFFT_EPS, batch=256):
    """Projections (n, N, N) float32 of a centred volume, RELION convention.

    shifts_A: (n, 2) rlnOriginX/YAngst values; each image is the projection translated by
    -origin, so that RELION's re-centring (shift by +origin) restores it.
    """
    volume = np.asarray(volume)
    R = euler_to_matrix(rot, tilt, psi)
    n = volume.shape[0]
    plan = _volume_plan(volume, eps)
    if shifts_A is not None:
        shifts_A = np.broadcast_to(np.asarray(shifts_A, dtype=np.float64).reshape(-1, 2),
                                   (len(R), 2))
    out = np.empty((len(R), n, n), dtype=np.float32)
    for start in range(0, len(R), batch):
        ft = fourier_slices(volume, R[start:start + batch], eps=eps, batch=batch, _plan=plan)
        if shifts_A is not None:
            ft *= shift_phases(n, -shifts_A[start:start + batch] / float(pixel_size))
        out[start:start + len(ft)] = _to_real(ft, n)
    return out


# ---------------------------------------------------------------------------------------
# CTF
# ---------------------------------------------------------------------------------------
def electron_wavelength(voltage_kv):
    """Relativistic electron wavelength in A for an acceleration voltage in kV."""
    v = float(voltage_kv) * 1e3
    return 12.2643247 / np.sqrt(v * (1.0 + v * 0.978466e-6))


def ctf_2d(box, pixel_size, defocus_u, defocus_v, defocus_angle, voltage=300.0, cs=2.7,
           amp_contrast=0.1, layout="rfft"):
    """RELION's CTF on a 2D grid (float64).

    defocus_u/v in A (positive = underfocus, as in rlnDefocusU/V), defocus_angle in degrees
    (rlnDefocusAngle, from the x axis towards y), voltage in kV, cs in mm.
    CTF = -sin(chi), chi = pi*lambda*dF*k^2 + pi/2*Cs*lambda^3*k^4 - atan(Q0/sqrt(1-Q0^2)),
    with dF = -(U+V)/2 - (U-V)/2*cos(2(phi - angle)) as RELION stores it: positive at k=0
    (= Q0), so multiplying projections by it and reconstructing with `--ctf` gives a
    positive map.

    layout="rfft" (default): shape (N, N//2+1), ky in np.fft order, kx = 0..N//2, i.e.
    the layout of np.fft.rfft2 of an image whose origin is at pixel N//2 after ifftshift.
    layout="fft": full (N, N), both axes in np.fft order (np.fft.fft2 layout).
    Defocus values may be arrays of length m: the result then has a leading axis m.
    """
    box = int(box)
    if layout == "rfft":
        KY, KX = frequency_axes(box, 2)
    elif layout == "fft":
        KY, KX = frequency_axes(box, 2, "fft")
    else:
        raise ValueError(f"layout must be 'rfft' or 'fft', got {layout!r}.")
    scalar = np.ndim(defocus_u) == 0 and np.ndim(defocus_v) == 0 and np.ndim(defocus_angle) == 0
    u, v, ang = (np.atleast_1d(np.asarray(x, dtype=np.float64))[:, None, None]
                 for x in (defocus_u, defocus_v, defocus_angle))
    sx = KX / (box * float(pixel_size))
    sy = KY / (box * float(pixel_size))
    s2 = sx ** 2 + sy ** 2
    lam = electron_wavelength(voltage)
    cs_a = float(cs) * 1e7
    q0 = float(amp_contrast)
    phi = np.arctan2(sy, sx)
    dF = -(u + v) / 2.0 - (u - v) / 2.0 * np.cos(2.0 * (phi - np.deg2rad(ang)))
    chi = (np.pi * lam * dF * s2 + 0.5 * np.pi * cs_a * lam ** 3 * s2 ** 2
           - np.arctan(q0 / np.sqrt(1.0 - q0 ** 2)))
    out = -np.sin(chi)
    return out[0] if scalar else out


def ctf_zeros(defocus, voltage=300.0, cs=2.7, amp_contrast=0.1, count=3):
    """Spatial frequencies (1/A) of the first `count` CTF zeros for an isotropic defocus (A)."""
    lam = electron_wavelength(voltage)
    cs_a = float(cs) * 1e7
    k3 = np.arctan(amp_contrast / np.sqrt(1.0 - amp_contrast ** 2))
    out = []
    # chi(s) = -pi*lam*D*s^2 + pi/2*Cs*lam^3*s^4 - k3 = -m*pi, m = 1, 2, ...: solve for s^2
    a, b = 0.5 * np.pi * cs_a * lam ** 3, -np.pi * lam * float(defocus)
    for m in range(1, 10 * count):
        c = -k3 + m * np.pi
        disc = b * b - 4 * a * c
        if disc < 0:
            break
        s2 = (-b - np.sqrt(disc)) / (2 * a)  # the branch that starts at low frequency
        if s2 > 0:
            out.append(np.sqrt(s2))
        if len(out) == count:
            break
    return np.array(out)


# ---------------------------------------------------------------------------------------
# Particles
# ---------------------------------------------------------------------------------------
@dataclass
class SimulatedParticles:
    images: np.ndarray
    rot: np.ndarray
    tilt: np.ndarray
    psi: np.ndarray
    shift_x_A: np.ndarray
    shift_y_A: np.ndarray
    defocus_u: np.ndarray
    defocus_v: np.ndarray
    defocus_angle: np.ndarray
    ctf: dict = None
    noise_sigma: float = 0.0
    snr_requested: float = None
    snr_measured: float = 0.0
    scale: float = None

    def __len__(self):
        return len(self.images)


DEFAULT_CTF = dict(defocus_min_A=10000.0, defocus_max_A=25000.0, voltage=300.0, cs=2.7,
                   amp_contrast=0.1)


def _ctf_settings(ctf):
    if ctf is None or ctf is False:
        return None
    settings = dict(DEFAULT_CTF)
    if ctf is not True:
        unknown = set(ctf) - set(DEFAULT_CTF)
        if unknown:
            raise ValueError(f"Unknown CTF settings {sorted(unknown)}; allowed: "
                             f"{sorted(DEFAULT_CTF)}.")
        settings.update(ctf)
    if not 0 < settings["defocus_min_A"] <= settings["defocus_max_A"]:
        raise ValueError("CTF defocus range must satisfy 0 < defocus_min_A <= defocus_max_A, got "
                         f"{settings['defocus_min_A']}..{settings['defocus_max_A']} A.")
    if not 0 <= settings["amp_contrast"] < 1:
        raise ValueError(f"Amplitude contrast must be in [0, 1), got {settings['amp_contrast']}.")
    return settings


def _clean_images(volume, pixel_size, n, ctf, max_shift_A, rng, batch):
    """Draw orientations, shifts and defoci; return the noise-free images and the draws."""
    box = volume.shape[0]
    rot, tilt, psi = uniform_rotations(n, rng)
    if max_shift_A > 0:
        shifts = rng.uniform(-max_shift_A, max_shift_A, (n, 2))
    else:
        shifts = np.zeros((n, 2))
    settings = _ctf_settings(ctf)
    if settings is not None:
        dmean = rng.uniform(settings["defocus_min_A"], settings["defocus_max_A"], n)
        # mild astigmatism (a few % of the defocus), random angle, as in real data sets
        astig = rng.uniform(0.0, 0.02, n) * dmean
        du, dv = dmean + astig / 2, dmean - astig / 2
        dang = rng.uniform(0.0, 180.0, n)
    else:
        du, dv, dang = np.zeros(n), np.zeros(n), np.zeros(n)

    R = euler_to_matrix(rot, tilt, psi)
    plan = _volume_plan(volume, NUFFT_EPS)
    images = np.empty((n, box, box), dtype=np.float32)
    for start in range(0, n, batch):
        stop = min(n, start + batch)
        ft = fourier_slices(volume, R[start:stop], batch=batch, _plan=plan)
        ft *= shift_phases(box, -shifts[start:stop] / pixel_size)
        if settings is not None:
            ft *= ctf_2d(box, pixel_size, du[start:stop], dv[start:stop], dang[start:stop],
                         settings["voltage"], settings["cs"], settings["amp_contrast"])
        images[start:stop] = _to_real(ft, box)
    return images, rot, tilt, psi, shifts, du, dv, dang, settings


def _image_variances(images, batch=256):
    # per-image pixel variance in float64, a batch at a time to keep memory small
    return np.concatenate([images[i:i + batch].astype(np.float64).var(axis=(1, 2))
                           for i in range(0, len(images), batch)])


def simulate_particles(volume, pixel_size, n, snr=None, scale=None, ctf=None, max_shift_A=0.0,
                       seed=0, batch=256):
    """Simulate n particle images of a centred volume with white Gaussian noise.

    Exactly one of:
      snr   -- target SNR = mean over images of the per-pixel variance of the clean
               (CTF-modulated) image / noise variance (Kimanius et al.); the noise sigma is
               set from the clean images;
      scale -- clean images are multiplied by `scale` and the noise sigma is 1.
    ctf: None (no CTF), True (DEFAULT_CTF) or a dict with keys of DEFAULT_CTF; defocus is
    drawn uniformly in [defocus_min_A, defocus_max_A] per particle.
    Shifts are uniform in [-max_shift_A, max_shift_A] and stored as rlnOriginX/YAngst.
    Same seed -> identical output.
    """
    if (snr is None) == (scale is None):
        raise ValueError("Give exactly one of snr= (target signal-to-noise ratio) or scale= "
                         "(intensity scale factor with unit noise).")
    if snr is not None and not snr > 0:
        raise ValueError(f"snr must be > 0, got {snr}.")
    if scale is not None and not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale}.")
    n = int(n)
    if n < 1:
        raise ValueError(f"Number of particles must be >= 1, got {n}.")
    volume = np.asarray(volume, dtype=np.float64)
    rng = np.random.default_rng(seed)
    images, rot, tilt, psi, shifts, du, dv, dang, settings = _clean_images(
        volume, float(pixel_size), n, ctf, float(max_shift_A), rng, int(batch))

    signal_var = float(np.mean(_image_variances(images, int(batch))))
    if signal_var <= 0:
        raise ValueError("The projections are empty (zero variance): is the volume all zeros?")
    if snr is not None:
        sigma = float(np.sqrt(signal_var / snr))
        used_scale = 1.0
    else:
        sigma = 1.0
        used_scale = float(scale)
        images *= np.float32(used_scale)
        signal_var *= used_scale ** 2

    # noise drawn after the parameters so the same seed gives the same geometry in both modes
    noise_var_sum = 0.0
    for start in range(0, n, batch):
        stop = min(n, start + batch)
        noise = rng.standard_normal(images[start:stop].shape) * sigma
        noise_var_sum += float(noise.var(axis=(1, 2)).sum())
        images[start:stop] += noise.astype(np.float32)
    snr_measured = signal_var / (noise_var_sum / n)

    return SimulatedParticles(
        images=images, rot=rot, tilt=tilt, psi=psi,
        shift_x_A=shifts[:, 0].copy(), shift_y_A=shifts[:, 1].copy(),
        defocus_u=du, defocus_v=dv, defocus_angle=dang,
        ctf=settings, noise_sigma=sigma,
        snr_requested=float(snr) if snr is not None else None,
        snr_measured=float(snr_measured),
        scale=float(scale) if scale is not None else None)


def mean_signal_variance(volume, pixel_size, ctf=None, n=200, seed=0):
    """Mean per-pixel variance of n clean (CTF-modulated) projections at scale 1."""
    volume = np.asarray(volume, dtype=np.float64)
    rng = np.random.default_rng(seed)
    images = _clean_images(volume, float(pixel_size), int(n), ctf, 0.0, rng, 256)[0]
    return float(np.mean(_image_variances(images)))


def snr_for_scale(volume, pixel_size, scale, ctf=None, n=200, seed=0):
    """SNR that an intensity scale factor gives with unit noise (SNR = scale^2 * signal var)."""
    return float(scale) ** 2 * mean_signal_variance(volume, pixel_size, ctf, n, seed)


def scale_for_snr(volume, pixel_size, snr, ctf=None, n=200, seed=0):
    """Intensity scale factor that gives the target SNR with unit noise."""
    return float(np.sqrt(float(snr) / mean_signal_variance(volume, pixel_size, ctf, n, seed)))
