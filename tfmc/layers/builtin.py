"""The handlers tfmc ships, registered for the tf_keras layers they describe."""
from tfmc._keras import keras
from tfmc.layers import channelwise, conv, depthwise, structural
from tfmc.layers.registry import register_layer

L = keras.layers


def _register_all():
    passthrough = structural.PassThrough()
    for cls in (
        L.ReLU, L.LeakyReLU, L.ELU, L.ThresholdedReLU, L.Dropout, L.SpatialDropout1D,
        L.SpatialDropout2D, L.SpatialDropout3D, L.GaussianNoise, L.GaussianDropout,
        L.AlphaDropout, L.ActivityRegularization, L.MaxPooling1D, L.MaxPooling2D,
        L.MaxPooling3D, L.AveragePooling1D, L.AveragePooling2D, L.AveragePooling3D,
        L.GlobalAveragePooling1D, L.GlobalAveragePooling2D, L.GlobalAveragePooling3D,
        L.GlobalMaxPooling1D, L.GlobalMaxPooling2D, L.GlobalMaxPooling3D, L.ZeroPadding1D,
        L.ZeroPadding2D, L.ZeroPadding3D, L.Cropping1D, L.Cropping2D, L.Cropping3D,
        L.UpSampling1D, L.UpSampling2D, L.UpSampling3D, L.Rescaling, L.Masking,
    ):
        register_layer(cls, passthrough)
    register_layer(L.Activation, structural.ActivationLayer())
    register_layer(L.Softmax, structural.ChannelMixing())
    merge = structural.ElementwiseMerge()
    for cls in (L.Add, L.Subtract, L.Multiply, L.Maximum, L.Minimum, L.Average):
        register_layer(cls, merge)
    register_layer(L.Concatenate, structural.Concatenation())
    # TFOpLambda is not exported by tf_keras; its class is the one the pinned tf_keras wraps `x + 3.` in
    from tf_keras.src.layers.core.tf_op_layer import TFOpLambda

    register_layer(TFOpLambda, structural.TensorFlowOp())
    register_layer(L.Reshape, structural.ReshapeLayer())
    register_layer(L.Flatten, structural.FlattenLayer())
    register_layer(keras.Model, structural.NestedModel())
    register_layer(L.BatchNormalization, channelwise.BatchNorm())
    register_layer(L.PReLU, channelwise.PReLUSlopes())
    register_layer(L.Dense, conv.DenseLayer())
    register_layer(L.Conv1D, conv.Conv1DLayer())
    register_layer(L.Conv2D, conv.Convolution())
    register_layer(L.Conv3D, conv.Conv3DLayer())
    transposed = conv.TransposedConvolution()
    for cls in (L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose):
        register_layer(cls, transposed)
    dw = depthwise.Depthwise()
    for cls in (L.DepthwiseConv1D, L.DepthwiseConv2D):
        register_layer(cls, dw)
    separable = depthwise.Separable()
    for cls in (L.SeparableConv1D, L.SeparableConv2D):
        register_layer(cls, separable)


_register_all()
