"""tfmc: structural channel pruning (AMC) and mixed precision (GMPQ) for tf_keras models."""
from setuptools import find_packages, setup

setup(
    name="tfmc",
    version="0.1.0",
    description="Keras model compression for mobile: AMC channel pruning, GMPQ mixed precision, TFLite export and timing",
    packages=find_packages(include=["tfmc", "tfmc.*", "tflite_bench", "tflite_bench.*"]),
    py_modules=["tfmc_console"],
    python_requires=">=3.10",
    install_requires=[
        "tensorflow==2.21.0",
        "tf-keras==2.21.0",
        "tensorboard==2.21.0",
        "tensorflow-model-optimization==0.8.1",
        "tf-agents==0.19.0",
        "tensorflow-probability==0.23.0",
        "tensorflow-datasets==4.9.10",
        "ai-edge-litert==2.3.0",
        "ai-edge-quantizer==0.10.0",
        "scikit-learn==1.9.1",
        "numpy==2.4.6",
        "matplotlib==3.11.2",
        "scipy==1.17.1",
        "tqdm==4.70.1",
        "h5py==3.14.0",
        "protobuf==7.36.2",
        "mlxtend==0.25.0",
    ],
    entry_points={
        "console_scripts": [
            "tfmc=tfmc_console:console_main",
            "tflite-bench=tflite_bench.cli:main",
        ]
    },
)
