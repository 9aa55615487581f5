"""Per-layer bit widths through tfmot: QuantizeConfigs and BitPolicy -> QAT model."""
from tfmc.quant.apply import qat_custom_objects, quantize, quantized_kernel
from tfmc.quant.configs import LayerBitsQuantizeConfig

__all__ = ["LayerBitsQuantizeConfig", "qat_custom_objects", "quantize", "quantized_kernel"]
