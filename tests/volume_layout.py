"""Reads a replicated volume's stores from the host, by the on-disk layout of
docs/volume.md, independently of grappe's C code: tests use it to rebuild
the volume the guest saw and to compare every chunk's replicas.

    vol = Volume([store0, store1, store2])   # in store-index order
    vol.replica_differences()                # chunks whose replicas differ
    vol.image()                              # the volume's bytes
"""
import hashlib
import struct

BLOCK = 4096
OFF_SEQ = 4040
OFF_HASH = 4064


def _header(path):
    """The newer valid copy of the header block (block 0, copies at 0 and 4 KiB)."""
    best = None
    with open(path, "rb") as f:
        for copy in (0, 1):
            f.seek(copy * BLOCK)
            blk = f.read(BLOCK)
            if len(blk) < BLOCK or not any(blk):
                continue
            if hashlib.blake2b(blk[:OFF_HASH], digest_size=32).digest() != blk[OFF_HASH:]:
                continue
            seq = struct.unpack_from("<Q", blk, OFF_SEQ)[0]
            if best is None or seq > best[0]:
                best = (seq, blk)
    if best is None:
        raise ValueError(f"{path}: no valid header copy")
    blk = best[1]
    size, chunk, replicas, stores, index, data_start = struct.unpack_from("<QIIIIQ", blk, 32)
    return dict(size=size, chunk=chunk, replicas=replicas, stores=stores, index=index,
                data_start=data_start)


class Volume:
    def __init__(self, paths):
        self.paths = paths
        self.h = [_header(p) for p in paths]
        h0 = self.h[0]
        for i, h in enumerate(self.h):
            assert h["index"] == i, f"{paths[i]} is store {h['index']}, not {i}"
            for k in ("size", "chunk", "replicas", "stores", "data_start"):
                assert h[k] == h0[k], f"{paths[i]}: {k} {h[k]} != {h0[k]}"
        assert h0["stores"] == len(paths)
        self.n, self.r, self.chunk = h0["stores"], h0["replicas"], h0["chunk"]
        self.chunks = -(-h0["size"] // self.chunk)
        self.size = h0["size"]

    def holders(self, c):
        """Stores holding chunk c: (c + k) mod N, k = 0 (primary) .. R-1."""
        return [(c + k) % self.n for k in range(self.r)]

    def slot(self, c, s):
        """Chunks are packed per store in chunk order."""
        return sum(1 for x in range(c) if s in self.holders(x))

    def read_chunk(self, c, s):
        length = min(self.chunk, self.size - c * self.chunk)
        with open(self.paths[s], "rb") as f:
            f.seek(self.h[s]["data_start"] + self.slot(c, s) * self.chunk)
            data = f.read(length)
        return data + bytes(length - len(data))  # a sparse tail reads as zeros

    def replica_differences(self):
        bad = []
        for c in range(self.chunks):
            copies = [self.read_chunk(c, s) for s in self.holders(c)]
            if any(x != copies[0] for x in copies[1:]):
                bad.append(c)
        return bad

    def image(self):
        return b"".join(self.read_chunk(c, self.holders(c)[0]) for c in range(self.chunks))
