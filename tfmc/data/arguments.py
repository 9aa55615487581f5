"""The command-line data arguments, --data SPEC and --data-dir DIR, that every tfmc command takes the same way."""
from tfmc.data.sources.fashion_mnist import FASHION_MNIST_DIR
from tfmc.data.specs import NAMED


def add_data_arguments(parser, help_text="the data", *, required=False, default=None, choices=None):
    """Add --data SPEC and --data-dir DIR to an argparse parser: every tfmc command that reads data uses it.

    Args:
      parser: an argparse parser (or argument group).
      help_text: what the command reads the data for, opening --data's help.
      required: --data must be given.
      default: --data's default spec (None: no data unless given).
      choices: the only specs accepted (a command bound to certain
        datasets); None accepts every form ``tfmc.data.load`` reads.

    Returns:
      ``parser``.

    Example:
      >>> parser = add_data_arguments(argparse.ArgumentParser(), "calibration images")
      >>> args = parser.parse_args(["--data", "fashion_mnist", "--data-dir", "~/fmnist"])
      >>> args.data, args.data_dir
      ('fashion_mnist', '~/fmnist')
    """
    if choices is None:
        accepted = (f"{', '.join(NAMED)}, tfds:NAME[:SPLIT], a folder of class sub-folders of images, "
                    "or an .npz with x and y")
    else:
        accepted = ", ".join(choices)
    parser.add_argument("--data", required=required, default=default, choices=choices,
                        help=f"{help_text}: {accepted}" + (f" (default {default})" if default else ""))
    parser.add_argument("--data-dir", help="where the files of --data are: the Fashion-MNIST IDX files "
                        f"(default {FASHION_MNIST_DIR}) or prepared tfds data (nothing is downloaded)")
    return parser
