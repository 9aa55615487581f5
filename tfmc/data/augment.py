"""Augmentation applied as images are read: random shifts (the random crop of CIFAR training)."""


def random_shift(image, pixels, generator):
    """``image`` (H x W x C) moved by a random offset of up to ``pixels`` in each direction, zeros filling the gap.

    The image is padded by ``pixels`` of zeros on every side and a window of
    its own size is cut at a random place: the random crop of CIFAR training
    (``RandomCrop(32, padding=4)``). Each call draws its offset from
    ``generator`` (a tf.random.Generator), so a seeded generator gives the
    same sequence of shifts; usable inside ``tf.data.Dataset.map``.

    Example:
      >>> gen = tf.random.Generator.from_seed(0)
      >>> image = tf.reshape(tf.range(1.0, 17.0), (4, 4, 1))
      >>> random_shift(image, 1, gen)[..., 0].numpy().astype(int).tolist()  # moved down one row
      [[0, 0, 0, 0], [1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12]]
    """
    from tfmc._keras import tf

    seed = generator.make_seeds(1)[:, 0]
    padded = tf.pad(image, [[pixels, pixels], [pixels, pixels], [0, 0]])
    return tf.image.stateless_random_crop(padded, tf.shape(image), seed)
