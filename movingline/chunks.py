"""The bytes of the compressed HDF5 chunks that hold moving-line samples, one sample per chunk.

A chunk is what HDF5's deflate filter followed by its fletcher32 filter would store: a
zlib stream of the sample's frames with HDF5's Fletcher-32 checksum appended, so any
HDF5 reader decompresses and verifies it. ``dataset.write_dataset`` writes these bytes
as they are; no h5py here.

Frames are cumulative: frame t is frame t-1 plus one pixel. So after frame 0 a sample's
bytes are copies of the bytes one frame (size * size bytes) earlier, broken only by the
new pixel of each frame. ``encode_paths`` writes the deflate stream of exactly that
(RFC 1951) straight from the paths, without rendering a frame: one block with the same
Huffman code for every sample, then per sample a few hundred back-references of up to 258
bytes at distance size * size and one literal per frame. At size 50 that is about 870
bytes per sample (zlib gives 1,380 at level 1 and 670 at level 4) at a small fraction of
zlib's time on the 125 KB of frames. ``encode_frames`` compresses any frames with zlib;
it is the fallback for frames too large to reach one frame back (size > 181).
"""

import functools
import zlib
from dataclasses import dataclass

import numpy as np

from movingline.sequences import RIGHT, Paths, columns, render_frames

ZLIB_LEVEL = 4
# Deflate reaches back at most 32 KiB, so a frame of size * size bytes must fit in it.
MAX_ENCODED_SIZE = 181

_LENGTH_BASES = (3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258)
_LENGTH_EXTRA = (0,) * 8 + (1,) * 4 + (2,) * 4 + (3,) * 4 + (4,) * 4 + (5,) * 4 + (0,)
_DISTANCE_BASES = (1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577)
_DISTANCE_EXTRA = (0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13)
_CODE_LENGTH_ORDER = (16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15)
_MAX_MATCH = 258
_END_OF_BLOCK = 256
# A zlib header (RFC 1950): deflate with a 32 KiB window, no dictionary; (0x78 << 8 | 0x01) % 31 == 0.
_ZLIB_HEADER = (0x78, 0x01)
_ADLER_MODULUS = 65521
# HDF5's Fletcher-32 sums 16-bit words in blocks of 360 before folding the sums.
_FLETCHER_BLOCK_WORDS = 360


def encode_paths(paths: Paths) -> list[bytes]:
    """The chunk of each sample of ``paths``: bytes that decode exactly to ``render_frames(paths)``."""
    if paths.size > MAX_ENCODED_SIZE:
        return encode_frames(render_frames(paths))
    if len(paths) == 0:
        return []
    values, bits, stream_lengths = _stream_tokens(paths, _code_table(paths.size))
    rows = _pack_tokens(values, bits, len(paths) * _row_bytes(stream_lengths)).reshape(len(paths), -1)
    return _with_checksums(rows, stream_lengths)


def encode_frames(frames: np.ndarray) -> list[bytes]:
    """The chunk of each sample of any uint8 frames (n, s, s, s, 1), compressed by zlib."""
    streams = [zlib.compress(np.ascontiguousarray(sample).data, ZLIB_LEVEL) for sample in frames]
    return _with_checksums(*_as_rows(streams))


def fletcher32(data: bytes) -> int:
    """HDF5's Fletcher-32 checksum of ``data``, as its fletcher32 filter appends it (little-endian)."""
    return int(_fletcher32_rows(*_as_rows([data]))[0])


def _row_bytes(lengths: np.ndarray) -> int:
    """Bytes per row for streams of ``lengths``: room for the longest and its checksum, a multiple of 4."""
    return (int(lengths.max(initial=0)) + 4 + 3) // 4 * 4


def _as_rows(streams: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """Streams as the rows of a zero-padded array, and their lengths."""
    lengths = np.array([len(stream) for stream in streams], dtype=np.int64)
    rows = np.zeros((len(streams), _row_bytes(lengths)), dtype=np.uint8)
    for row, stream in zip(rows, streams):
        row[: len(stream)] = np.frombuffer(stream, dtype=np.uint8)
    return rows, lengths


def _with_checksums(rows: np.ndarray, lengths: np.ndarray) -> list[bytes]:
    """Each row's stream of ``lengths`` bytes followed by its Fletcher-32, little-endian."""
    checksums = _fletcher32_rows(rows, lengths).astype("<u4").view(np.uint8).reshape(-1, 4)
    rows[np.arange(len(rows))[:, None], lengths[:, None] + np.arange(4)] = checksums
    return [row[: length + 4].tobytes() for row, length in zip(rows, lengths.tolist())]


def _fletcher32_rows(rows: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """H5_checksum_fletcher32 of the first ``lengths`` bytes of each row (rows zero beyond them).

    HDF5 sums big-endian 16-bit words in blocks of 360; after each block both sums are
    folded to 16 bits, the second sum having wrapped at 32 bits as C's uint32_t does. A
    last odd byte comes after the blocks, as the high half of a word. All rows are summed
    at once, block by block.
    """
    words = rows.view(">u2").astype(np.float64)
    n_words = lengths // 2
    odd = np.flatnonzero(lengths % 2)
    words[odd, n_words[odd]] = 0
    sum1 = np.zeros(len(rows), dtype=np.int64)
    sum2 = np.zeros(len(rows), dtype=np.int64)
    for first in range(0, words.shape[1], _FLETCHER_BLOCK_WORDS):
        block = words[:, first : first + _FLETCHER_BLOCK_WORDS]
        width = block.shape[1]
        length = np.clip(n_words - first, 0, width)
        # Word i of a block of `length` words is added into sum2 `length - i` times; the
        # zero words past a stream's end add nothing. Sums stay below 2**53: exact in float64.
        block_sum = block.sum(axis=1).astype(np.int64)
        weighted = (block @ np.arange(width, 0, -1, dtype=np.float64)).astype(np.int64) - (width - length) * block_sum
        active = length > 0
        sum2 = np.where(active, _fold((sum2 + length * sum1 + weighted) % 2**32), sum2)
        sum1 = np.where(active, _fold(sum1 + block_sum), sum1)
    sum1[odd] = _fold(sum1[odd] + (rows[odd, lengths[odd] - 1].astype(np.int64) << 8))
    sum2[odd] = _fold(sum2[odd] + sum1[odd])
    return _fold(sum2) << 16 | _fold(sum1)


def _fold(value: np.ndarray) -> np.ndarray:
    return (value & 0xFFFF) + (value >> 16)


@dataclass(frozen=True)
class _CodeTable:
    """What is the same in the stream of every sample of one size: headers and token codes.

    A token is a value of at most 32 bits written least significant bit first, with its
    bit count; Huffman codes are stored bit-reversed, as deflate packs them from the top.
    """

    header_values: np.ndarray  # the zlib header and the deflate block header, cut into tokens
    header_bits: np.ndarray
    literal_values: np.ndarray  # the literals 0 and 1, and the end of the block
    literal_bits: np.ndarray
    match_values: np.ndarray  # [length 0 .. 258, distance 1 or size * size]: codes and extra bits
    match_bits: np.ndarray


_LITERAL_ZERO, _LITERAL_ONE, _BLOCK_END = 0, 1, 2
_NEAR, _FAR = 0, 1


def _literal_length_code_lengths() -> list[int]:
    """Bits per symbol of the literal/length code, chosen for this data once for all samples.

    A 258-byte match (symbol 285) is by far the most common, then the literal 1 that draws
    each new pixel; the other lengths end each copy. The code is complete (Kraft sum 1),
    as zlib requires.
    """
    lengths = [0] * 286
    lengths[285] = 1
    lengths[1] = 2
    lengths[0] = lengths[_END_OF_BLOCK] = 6
    for symbol in range(257, 285):
        lengths[symbol] = 7
    return lengths


def _code_length_code_lengths() -> list[int]:
    """A complete code over the 19 code-length symbols: 13 of 4 bits and 6 of 5 bits."""
    lengths = [0] * 19
    for rank, symbol in enumerate(_CODE_LENGTH_ORDER):
        lengths[symbol] = 4 if rank < 13 else 5
    return lengths


def _canonical_codes(lengths: list[int]) -> list[int]:
    """RFC 1951's canonical Huffman codes, bit-reversed because deflate packs them from the top bit."""
    max_bits = max(lengths)
    counts = [0] * (max_bits + 1)
    for length in lengths:
        if length:
            counts[length] += 1
    next_code, code = [0] * (max_bits + 2), 0
    for bits in range(1, max_bits + 1):
        code = (code + counts[bits - 1]) << 1
        next_code[bits] = code
    codes = [0] * len(lengths)
    for symbol, length in enumerate(lengths):
        if length:
            codes[symbol] = int(f"{next_code[length]:0{length}b}"[::-1], 2)
            next_code[length] += 1
    return codes


def _distance_code(distance: int) -> int:
    return max(code for code, base in enumerate(_DISTANCE_BASES) if base <= distance)


def _length_code(length: int) -> int:
    return max(code for code, base in enumerate(_LENGTH_BASES) if base <= length)


class _BitWriter:
    """Collects (value, bit count) fields in deflate's order, least significant bit first."""

    def __init__(self) -> None:
        self.fields: list[tuple[int, int]] = []

    def write(self, value: int, bits: int) -> None:
        self.fields.append((value, bits))

    def as_tokens(self) -> tuple[np.ndarray, np.ndarray]:
        """The fields merged into tokens of at most 32 bits."""
        bits = "".join(f"{value:0{n}b}"[::-1] for value, n in self.fields if n)
        pieces = [bits[i : i + 32] for i in range(0, len(bits), 32)]
        values = np.array([int(piece[::-1], 2) for piece in pieces], dtype=np.int64)
        return values, np.array([len(piece) for piece in pieces], dtype=np.int64)


def _code_length_runs(lengths: list[int]) -> list[tuple[int, int, int]]:
    """Run-length encodes code lengths as (symbol, extra value, extra bits) with symbols 16, 17, 18."""
    runs, index = [], 0
    while index < len(lengths):
        value, run = lengths[index], 1
        while index + run < len(lengths) and lengths[index + run] == value:
            run += 1
        index += run
        if value == 0:
            while run >= 11:
                step = min(run, 138)
                runs.append((18, step - 11, 7))
                run -= step
            if run >= 3:
                runs.append((17, run - 3, 3))
                run = 0
            runs.extend([(0, 0, 0)] * run)
            continue
        runs.append((value, 0, 0))
        run -= 1
        while run >= 3:
            step = min(run, 6)
            runs.append((16, step - 3, 2))
            run -= step
        runs.extend([(value, 0, 0)] * run)
    return runs


@functools.cache
def _code_table(size: int) -> _CodeTable:
    literal_lengths = _literal_length_code_lengths()
    far_code = _distance_code(size * size)
    distance_lengths = [0] * (far_code + 1)
    distance_lengths[0] = distance_lengths[far_code] = 1
    code_length_lengths = _code_length_code_lengths()
    code_length_codes = _canonical_codes(code_length_lengths)

    header = _BitWriter()
    header.write(_ZLIB_HEADER[0] | _ZLIB_HEADER[1] << 8, 16)
    header.write(1, 1)  # the final block,
    header.write(2, 2)  # with dynamic Huffman codes
    header.write(len(literal_lengths) - 257, 5)
    header.write(len(distance_lengths) - 1, 5)
    header.write(len(_CODE_LENGTH_ORDER) - 4, 4)
    for symbol in _CODE_LENGTH_ORDER:
        header.write(code_length_lengths[symbol], 3)
    for symbol, extra, extra_bits in _code_length_runs(literal_lengths + distance_lengths):
        header.write(code_length_codes[symbol], code_length_lengths[symbol])
        header.write(extra, extra_bits)

    literal_codes = _canonical_codes(literal_lengths)
    distance_codes = _canonical_codes(distance_lengths)
    match_values = np.zeros((_MAX_MATCH + 1, 2), dtype=np.int64)
    match_bits = np.zeros((_MAX_MATCH + 1, 2), dtype=np.int64)
    for length in range(3, _MAX_MATCH + 1):
        code = _length_code(length)
        symbol = 257 + code
        for reach, distance in ((_NEAR, 1), (_FAR, size * size)):
            match = _BitWriter()
            match.write(literal_codes[symbol], literal_lengths[symbol])
            match.write(length - _LENGTH_BASES[code], _LENGTH_EXTRA[code])
            distance_code = _distance_code(distance)
            match.write(distance_codes[distance_code], distance_lengths[distance_code])
            match.write(distance - _DISTANCE_BASES[distance_code], _DISTANCE_EXTRA[distance_code])
            (match_values[length, reach],), (match_bits[length, reach],) = match.as_tokens()
    symbols = (0, 1, _END_OF_BLOCK)
    header_values, header_bits = header.as_tokens()
    return _CodeTable(
        header_values=header_values,
        header_bits=header_bits,
        literal_values=np.array([literal_codes[s] for s in symbols], dtype=np.int64),
        literal_bits=np.array([literal_lengths[s] for s in symbols], dtype=np.int64),
        match_values=match_values,
        match_bits=match_bits,
    )


# The kinds of segment a sample's stream is cut into, each written as tokens.
_HEADER, _ZEROS, _PIXEL, _ZERO_RUN, _COPY, _SHORT_COPY, _END, _PADDING, _ADLER, _GAP = range(10)


def _pixel_positions(paths: Paths) -> np.ndarray:
    """Where in its sample's bytes each step's new pixel lies, shape (n, size)."""
    size = paths.size
    steps = np.arange(size, dtype=np.int64)[None, :]
    return steps * size * size + paths.rows.astype(np.int64) * size + columns(paths.labels, size)


def _segments(paths: Paths, n_header: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Start, length (bytes, or tokens for the headers) and kind of each segment, sample after sample.

    Frame 0 is zeros around one pixel: each run of zeros is one literal 0 and a match at
    distance 1 (a run of up to 3 is literals). Every later byte up to the next new pixel
    is copied from one frame back, and each new pixel is a literal 1; a copy of one or
    two bytes, too short for a match, is written as literals. Each sample has 2 * size + 9
    segments, some empty.
    """
    n, size = len(paths), paths.size
    area = size * size
    pixels = _pixel_positions(paths)
    zeros, ones = np.zeros(n, dtype=np.int64), np.ones(n, dtype=np.int64)
    starts, lengths, kinds = [], [], []

    def add(start: np.ndarray, length: np.ndarray, kind: np.ndarray | int) -> None:
        starts.append(start)
        lengths.append(length)
        kinds.append(np.broadcast_to(np.asarray(kind, dtype=np.int64), (n,)))

    def add_zero_run(start: np.ndarray, run: np.ndarray) -> None:
        short = run <= 3
        add(start, np.where(short, run, 1), _ZEROS)
        add(start + 1, np.where(short, 0, run - 1), _ZERO_RUN)

    add(zeros, ones * n_header, _HEADER)
    first = pixels[:, 0]
    add_zero_run(zeros, first)
    add(first, ones, _PIXEL)
    add_zero_run(first + 1, area - 1 - first)
    copy_start = np.full(n, area, dtype=np.int64)
    for step in range(1, size + 1):
        copy_stop = pixels[:, step] if step < size else np.full(n, size * area, dtype=np.int64)
        copy_length = copy_stop - copy_start
        add(copy_start, copy_length, np.where(copy_length < 3, _SHORT_COPY, _COPY))
        if step < size:
            add(copy_stop, ones, _PIXEL)
            copy_start = copy_stop + 1
    for kind in (_END, _PADDING, _ADLER, _GAP):
        add(zeros, ones, kind)
    return tuple(np.stack(parts, axis=1).reshape(-1) for parts in (starts, lengths, kinds))


def _pixel_values(paths: Paths, samples: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """The byte (0 or 1) at ``positions`` of ``samples``: is that pixel drawn by that frame?"""
    size = paths.size
    frame, pixel = np.divmod(positions, size * size)
    row, column = np.divmod(pixel, size)
    # Each column is drawn at exactly one step.
    step = np.where(paths.labels[samples] == RIGHT, column, size - 1 - column)
    return ((step <= frame) & (paths.rows[samples, step] == row)).astype(np.int64)


def _stream_tokens(paths: Paths, table: _CodeTable) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Value and bit count of every token of every sample's zlib stream, in order, and each stream's bytes.

    A stream is the zlib and block headers, the block's tokens, zero bits up to a byte
    boundary and the big-endian Adler-32 of the frames; zero bits then pad it to a row.
    """
    n, n_header = len(paths), len(table.header_values)
    starts, lengths, kinds = _segments(paths, n_header)
    is_match = (kinds == _ZERO_RUN) | (kinds == _COPY)
    n_tokens = np.where(is_match, -(-lengths // _MAX_MATCH), lengths)
    first_token = np.cumsum(n_tokens) - n_tokens
    reach = np.where(kinds == _COPY, _FAR, _NEAR)

    # Most tokens are 258-byte matches: fill every segment with its commonest token, then fix the rest.
    literal = np.select([kinds == _PIXEL, kinds == _END], [_LITERAL_ONE, _BLOCK_END], _LITERAL_ZERO)
    segment_values = np.where(is_match, table.match_values[_MAX_MATCH, reach], table.literal_values[literal])
    segment_bits = np.where(is_match, table.match_bits[_MAX_MATCH, reach], table.literal_bits[literal])
    values = np.repeat(segment_values, n_tokens)
    bits = np.repeat(segment_bits, n_tokens)

    # The last match of a run is shorter; one shorter than 3 bytes borrows from the match before.
    matched = np.flatnonzero(is_match & (n_tokens > 0))
    last = lengths[matched] - _MAX_MATCH * (n_tokens[matched] - 1)
    borrow = last < 3
    last_token = first_token[matched] + n_tokens[matched] - 1
    last_length = np.where(borrow, 3, last)
    values[last_token] = table.match_values[last_length, reach[matched]]
    bits[last_token] = table.match_bits[last_length, reach[matched]]
    lender = last_token[borrow] - 1
    lender_length = _MAX_MATCH - (3 - last[borrow])
    values[lender] = table.match_values[lender_length, reach[matched][borrow]]
    bits[lender] = table.match_bits[lender_length, reach[matched][borrow]]

    segments_per_sample = len(kinds) // n
    short = np.flatnonzero(kinds == _SHORT_COPY)
    for index in range(2):
        copied = short[lengths[short] > index]
        symbol = _pixel_values(paths, copied // segments_per_sample, starts[copied] + index)
        values[first_token[copied] + index] = table.literal_values[symbol]
        bits[first_token[copied] + index] = table.literal_bits[symbol]

    header_tokens = first_token[kinds == _HEADER][:, None] + np.arange(n_header)[None, :]
    values[header_tokens] = table.header_values
    bits[header_tokens] = table.header_bits
    padding_token, adler_token, gap_token = (first_token[kinds == kind] for kind in (_PADDING, _ADLER, _GAP))
    values[padding_token] = values[adler_token] = values[gap_token] = 0
    bits[padding_token] = bits[adler_token] = bits[gap_token] = 0
    stream_bits = np.add.reduceat(bits, first_token[::segments_per_sample])
    bits[padding_token] = -stream_bits % 8
    values[adler_token] = _adler32(paths).astype(">u4").view("<u4")
    bits[adler_token] = 32
    stream_lengths = (stream_bits + bits[padding_token]) // 8 + 4
    # Zero bits up to the next row, so that each stream starts a row of _row_bytes bytes.
    bits[gap_token] = 8 * (_row_bytes(stream_lengths) - stream_lengths)
    return values, bits, stream_lengths


def _adler32(paths: Paths) -> np.ndarray:
    """The Adler-32 of each sample's frames, from its path alone.

    For bytes d_1 .. d_m it is B << 16 | A with A = 1 + sum d_i and B = m + sum (m + 1 - i) d_i,
    both modulo 65521. A sample's ones are step k's pixel in every frame t >= k, at byte
    t * size**2 + pixel_k (counting from 0).
    """
    size = paths.size
    area, total = size * size, size**3
    pixels = paths.rows.astype(np.int64) * size + columns(paths.labels, size)
    steps = np.arange(size, dtype=np.int64)
    frames_holding = size - steps
    frames_total = (size - 1 + steps) * frames_holding // 2  # the sum of t over t = k .. size-1
    weighted = (frames_holding * (total - pixels) - area * frames_total).sum(axis=1)
    a = (1 + size * (size + 1) // 2) % _ADLER_MODULUS
    b = (total + weighted) % _ADLER_MODULUS
    return b << 16 | a


def _pack_tokens(values: np.ndarray, bits: np.ndarray, n_bytes: int) -> np.ndarray:
    """Packs tokens of at most 32 bits into bytes, least significant bit first."""
    start = np.cumsum(bits) - bits
    word = start >> 5
    shifted = values << (start & 31)
    n_words = -(-n_bytes // 4) + 1
    # Tokens cover disjoint bits, so adding them is the same as OR-ing them; the sums stay
    # below 2**32, exact in float64.
    packed = np.bincount(word, weights=shifted & 0xFFFFFFFF, minlength=n_words)
    packed += np.bincount(word + 1, weights=shifted >> 32, minlength=n_words)
    return packed.astype("<u4").view(np.uint8)[:n_bytes]
