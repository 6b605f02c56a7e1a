"""3D U-Net denoiser after Kimanius et al. 2021 (sec. 3.1, Acta D version) in Keras 3.

Per stage two BN+ReLU+Conv3D blocks, 2^3 average pooling on the way down, stride-2
transposed convolutions on the way up, skip concatenation, a final 1^3 convolution.
Residual learning is built into the model: the convolutional part predicts the noise and
the model returns input - noise, so `model(x)` is already the denoised map (metadata
'residual': False for core.denoiser.model.Denoiser, which would otherwise subtract a second time).

Only stock Keras layers are used, so a saved model loads with keras.saving.load_model and no
custom objects (core.denoiser.model.Denoiser does exactly that).
"""
import keras
from keras import layers

# The paper's network: 5 stages, 4 channels in the first hidden layer, doubled per stage
# (bottleneck 3^3 for its 96^3 maps): 1.42 M parameters with our block layout.
PAPER = dict(levels=5, base_filters=4)
# Plugin default (= build_unet's defaults): one stage less, so boxes need only be multiples
# of 16 and 64^3 maps keep a 4^3 bottleneck; 8 channels at the top for capacity. Same
# parameter count as PAPER (1.42 M) but ~4x its convolution work at full resolution: see
# benchmarks/bench_denoiser.py for the time per training step of each.
CPU = dict(levels=4, base_filters=8)
PRESETS = {"paper": PAPER, "cpu": CPU}


def _block(x, filters, kernel, reg, name):
    # pre-activation BN+ReLU+Conv, as in the reference implementation
    x = layers.BatchNormalization(name=name + "_bn")(x)
    x = layers.ReLU(name=name + "_relu")(x)
    return layers.Conv3D(filters, kernel, padding="same", kernel_regularizer=reg,
                         name=name + "_conv")(x)


def build_unet(levels=4, base_filters=8, kernel=3, weight_decay=1e-4, residual=True,
               name="redprior_unet"):
    """A 3D U-Net mapping a (batch, n, n, n, 1) map to its denoised version.

    levels: number of down/up-sampling stages; inputs must be divisible by 2**levels.
    base_filters: channels of the first stage, doubled at each lower stage.
    weight_decay: the reference's L2 regulariser scale; as there, the penalty added to the
    loss is 0.01 * weight_decay * sum(w^2) / 2 (tf.contrib l2_regularizer scaled by 0.01),
    i.e. 5e-7 sum(w^2) at the default 1e-4, small next to the L2 loss of standardised maps.
    residual: the convolutions predict the noise and the model outputs input - noise.
    """
    if levels < 1 or base_filters < 1:
        raise ValueError(f"build_unet needs levels >= 1 and base_filters >= 1, got {levels}, "
                         f"{base_filters}.")
    reg = keras.regularizers.L2(0.5 * 0.01 * weight_decay) if weight_decay else None
    inp = keras.Input(shape=(None, None, None, 1), name="map")
    x = layers.Conv3D(base_filters, kernel, padding="same", kernel_regularizer=reg,
                      name="stem_conv")(inp)
    skips = []
    for lev in range(levels):
        f = base_filters * 2 ** lev
        x = _block(x, f, kernel, reg, f"down{lev}a")
        x = _block(x, f, kernel, reg, f"down{lev}b")
        skips.append(x)
        x = layers.AveragePooling3D(2, name=f"pool{lev}")(x)
    f = base_filters * 2 ** levels
    x = _block(x, f, kernel, reg, "bottom_a")
    x = _block(x, f, kernel, reg, "bottom_b")
    for lev in reversed(range(levels)):
        f = base_filters * 2 ** lev
        x = layers.Conv3DTranspose(f, 2, strides=2, padding="same", kernel_regularizer=reg,
                                   name=f"up{lev}_tconv")(x)
        x = layers.Concatenate(name=f"up{lev}_concat")([x, skips[lev]])
        x = _block(x, f, kernel, reg, f"up{lev}a")
        x = _block(x, f, kernel, reg, f"up{lev}b")
    pred = layers.Conv3D(1, 1, padding="same", kernel_regularizer=reg, name="out_conv")(x)
    out = layers.Subtract(name="denoised")([inp, pred]) if residual else pred
    return keras.Model(inp, out, name=name)


def unet_levels(model):
    """Number of pooling stages of a model built here (its input must divide by 2**levels)."""
    return sum(1 for lay in model.layers if isinstance(lay, layers.AveragePooling3D))


def build_preset(preset="cpu", **overrides):
    if preset not in PRESETS:
        raise ValueError(f"Unknown U-Net preset '{preset}'; use one of {', '.join(PRESETS)}.")
    kw = dict(PRESETS[preset])
    kw.update(overrides)
    return build_unet(**kw)
