"""An output: a folder of shard files plus their manifest, on any fsspec URL.

``fs`` (URLs, atomic writes, listing), ``codecs`` (file formats by name), ``dtypes`` (stored sample
dtypes), ``images`` (image samples as uint8 and PNG), ``shards`` (names, commit, verification),
``manifest``, ``reader``, ``verify``.
"""
