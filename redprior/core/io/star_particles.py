"""RELION 3.1 particle STAR + MRC stack for simulated particles (pure numpy, no Scipion)."""
import os

import mrcfile
import numpy as np
from emtable import Table

OPTICS_COLUMNS = ["rlnOpticsGroup", "rlnOpticsGroupName", "rlnImagePixelSize", "rlnImageSize",
                  "rlnImageDimensionality", "rlnVoltage", "rlnSphericalAberration",
                  "rlnAmplitudeContrast"]

# Used in the optics table when the particles carry no CTF: RELION 3.1 requires the columns.
_NO_CTF_OPTICS = dict(voltage=300.0, cs=2.7, amp_contrast=0.1)


def write_particles(sim, pixel_size, folder, name="particles"):
    """Write <folder>/<name>.mrcs and <folder>/<name>.star (RELION 3.1); return the STAR path.

    rlnImageName is relative to the STAR file's folder ("000001@<name>.mrcs"), which is how
    RELION resolves it when run from that folder.
    """
    os.makedirs(folder, exist_ok=True)
    images = np.asarray(sim.images, dtype=np.float32)
    n, box = images.shape[0], images.shape[-1]
    stack = os.path.join(folder, f"{name}.mrcs")
    star = os.path.join(folder, f"{name}.star")
    with mrcfile.new(stack, overwrite=True) as mrc:
        mrc.set_data(images)
        mrc.set_image_stack()
        mrc.voxel_size = float(pixel_size)

    optics_values = sim.ctf if sim.ctf else _NO_CTF_OPTICS
    optics = Table(columns=OPTICS_COLUMNS)
    optics.addRow(1, "opticsGroup1", float(pixel_size), int(box), 2,
                  float(optics_values["voltage"]), float(optics_values["cs"]),
                  float(optics_values["amp_contrast"]))

    cols = ["rlnImageName", "rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi",
            "rlnOriginXAngst", "rlnOriginYAngst"]
    if sim.ctf:
        cols += ["rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle"]
    cols += ["rlnOpticsGroup"]
    particles = Table(columns=cols)
    for i in range(n):
        row = [f"{i + 1:06d}@{name}.mrcs", float(sim.rot[i]), float(sim.tilt[i]),
               float(sim.psi[i]), float(sim.shift_x_A[i]), float(sim.shift_y_A[i])]
        if sim.ctf:
            row += [float(sim.defocus_u[i]), float(sim.defocus_v[i]), float(sim.defocus_angle[i])]
        row.append(1)
        particles.addRow(*row)

    tmp = star + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n# version 30001\n")
        optics.writeStar(f, tableName="optics")
        f.write("\n# version 30001\n")
        particles.writeStar(f, tableName="particles")
    os.replace(tmp, star)
    return star


def read_particles(star):
    """Read a particle STAR (RELION 3.1) -> dict of numpy arrays and the optics values.

    Keys: image_name, rot, tilt, psi, shift_x_A, shift_y_A, defocus_u, defocus_v,
    defocus_angle (zeros when absent), pixel_size, box, voltage, cs, amp_contrast.
    """
    if not os.path.exists(star):
        raise ValueError(f"Particle STAR file {star} does not exist.")
    try:
        optics = Table(fileName=star, tableName="optics")
        parts = Table(fileName=star, tableName="particles")
    except Exception as exc:  # emtable raises plain Exceptions for missing tables
        raise ValueError(f"{star} is not a RELION 3.1 particle STAR file with data_optics and "
                         f"data_particles tables ({exc}).") from exc

    def col(name, default=0.0):
        if parts.hasColumn(name):
            return np.array(parts.getColumnValues(name), dtype=np.float64)
        return np.full(parts.size(), default, dtype=np.float64)

    orow = optics[0]
    return dict(
        image_name=list(parts.getColumnValues("rlnImageName")),
        rot=col("rlnAngleRot"), tilt=col("rlnAngleTilt"), psi=col("rlnAnglePsi"),
        shift_x_A=col("rlnOriginXAngst"), shift_y_A=col("rlnOriginYAngst"),
        defocus_u=col("rlnDefocusU"), defocus_v=col("rlnDefocusV"),
        defocus_angle=col("rlnDefocusAngle"),
        pixel_size=float(orow.rlnImagePixelSize), box=int(orow.rlnImageSize),
        voltage=float(orow.rlnVoltage), cs=float(orow.rlnSphericalAberration),
        amp_contrast=float(orow.rlnAmplitudeContrast))
