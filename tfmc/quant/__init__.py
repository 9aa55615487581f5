"""Per-layer bit widths through tfmot's 8-bit scheme: QuantizeConfigs and BitPolicy -> QAT model."""
from tfmc.quant.apply import qat_custom_objects, quantize, quantized_kernel
from tfmc.quant.configs import LayerBitsQuantizeConfig
from tfmc.quant.quantizers import LearnedRangeQuantizer, StoredGridWeightsQuantizer

__all__ = ["LayerBitsQuantizeConfig", "LearnedRangeQuantizer", "StoredGridWeightsQuantizer", "qat_custom_objects",
           "quantize", "quantized_kernel"]
