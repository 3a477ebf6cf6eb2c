"""Models shipped with seedshard: the digits demo flow net, its FID classifier, and Inception-v3 for FID."""
