#!/usr/bin/env python3
"""ELF to UF2 for the Raspberry Pi Pico 2 (RP2350), for users without a debug probe.

    firmware/elf2uf2.py spark-app.elf spark-app.uf2          # write the UF2
    firmware/elf2uf2.py --check spark-app.elf spark-app.uf2  # verify a UF2 against the ELF

Hold BOOTSEL while plugging the Pico 2 in: it mounts as a USB drive (RP2350); copy the
.uf2 file onto it and the board writes it to flash and starts it.

The UF2 format: 512-byte blocks, each carrying 256 bytes of payload for one 256-byte-aligned
flash address, with the "family ID present" flag and the RP2350 Arm Secure family
0xe48bff59 (SPEC section 10). The payload is every loadable ELF segment with file bytes,
at its load (physical) address -- `.data`'s initial values included, which the ELF keeps
in flash at an address other than the one it runs at. Bytes of a 256-byte page that no
segment covers are written as zeros. Only the flash window 0x10000000..0x11000000 is
accepted; anything else (a segment for RAM with file bytes) is an error.

Errors are reported as one line and exit status 1.
"""
import struct
import sys

MAGIC0, MAGIC1, MAGIC_END = 0x0A324655, 0x9E5D5157, 0x0AB16F30
FLAG_FAMILY = 0x00002000
RP2350_ARM_S = 0xE48BFF59
PAGE = 256
FLASH_START, FLASH_END = 0x10000000, 0x11000000


class Error(Exception):
    pass


def load_segments(elf):
    """(address, bytes) of each PT_LOAD segment with file bytes (32-bit little-endian ELF)."""
    if len(elf) < 52 or elf[:4] != b"\x7fELF":
        raise Error("not an ELF file")
    if elf[4] != 1 or elf[5] != 1:
        raise Error("not a 32-bit little-endian ELF file")
    e_phoff, = struct.unpack_from("<I", elf, 28)
    e_phentsize, e_phnum = struct.unpack_from("<HH", elf, 42)
    if e_phentsize < 32 or e_phoff + e_phnum * e_phentsize > len(elf):
        raise Error("the program header table is out of the file")
    segs = []
    for i in range(e_phnum):
        p_type, p_offset, _vaddr, p_paddr, p_filesz = struct.unpack_from("<IIIII", elf, e_phoff + i * e_phentsize)
        if p_type != 1 or p_filesz == 0:
            continue
        if p_offset + p_filesz > len(elf):
            raise Error(f"segment {i} is out of the file")
        if not (FLASH_START <= p_paddr and p_paddr + p_filesz <= FLASH_END):
            raise Error(f"segment {i} at {p_paddr:#010x} (+{p_filesz}) is not in the RP2350's flash window")
        segs.append((p_paddr, elf[p_offset:p_offset + p_filesz]))
    if not segs:
        raise Error("no loadable segment with bytes")
    return segs


def pages(segs):
    """{page address: 256 bytes}, zeros where no segment writes."""
    out = {}
    for addr, data in segs:
        for i, b in enumerate(data):
            a = addr + i
            page = out.setdefault(a - a % PAGE, bytearray(PAGE))
            page[a % PAGE] = b
    return out


def to_uf2(segs):
    pg = pages(segs)
    n = len(pg)
    blocks = []
    for i, addr in enumerate(sorted(pg)):
        head = struct.pack("<8I", MAGIC0, MAGIC1, FLAG_FAMILY, addr, PAGE, i, n, RP2350_ARM_S)
        blocks.append(head + bytes(pg[addr]) + bytes(476 - PAGE) + struct.pack("<I", MAGIC_END))
    return b"".join(blocks)


def parse_uf2(uf2):
    """{address: payload} of a UF2 file, checking every block's framing."""
    if len(uf2) == 0 or len(uf2) % 512:
        raise Error("a UF2 file is a whole number of 512-byte blocks")
    n = len(uf2) // 512
    out = {}
    for i in range(n):
        b = uf2[i * 512:(i + 1) * 512]
        m0, m1, flags, addr, size, no, total, fam = struct.unpack_from("<8I", b, 0)
        end, = struct.unpack_from("<I", b, 508)
        if (m0, m1, end) != (MAGIC0, MAGIC1, MAGIC_END):
            raise Error(f"block {i}: bad magic")
        if flags != FLAG_FAMILY or fam != RP2350_ARM_S:
            raise Error(f"block {i}: not an RP2350 Arm Secure block (flags {flags:#x}, family {fam:#x})")
        if size != PAGE or addr % PAGE or no != i or total != n:
            raise Error(f"block {i}: bad size, address or numbering")
        if addr in out:
            raise Error(f"block {i}: address {addr:#010x} twice")
        out[addr] = b[32:32 + PAGE]
    return out


def main(argv):
    check = argv[:1] == ["--check"]
    args = argv[1:] if check else argv
    if len(args) != 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    try:
        with open(args[0], "rb") as f:
            segs = load_segments(f.read())
        want = pages(segs)
        if check:
            with open(args[1], "rb") as f:
                got = parse_uf2(f.read())
            if got != {a: bytes(p) for a, p in want.items()}:
                raise Error("the UF2 payload differs from the ELF's loadable bytes")
            # The boot ROM looks for a block (start marker 0xffffded3 ... end marker
            # 0xab123579) in the first 4 KiB of flash.
            first = b"".join(got.get(FLASH_START + o, bytes(PAGE)) for o in range(0, 4096, PAGE))
            start = first.find(struct.pack("<I", 0xFFFFDED3))
            if start < 0 or first.find(struct.pack("<I", 0xAB123579), start) < 0:
                raise Error("no RP2350 boot block (IMAGE_DEF) in the first 4 KiB of flash")
            print(f"{args[1]}: {len(got)} blocks, family {RP2350_ARM_S:#010x}, "
                  f"{min(got):#010x}..{max(got) + PAGE:#010x}, boot block at {FLASH_START + start:#010x}: equal to {args[0]}")
        else:
            data = to_uf2(segs)
            with open(args[1], "wb") as f:
                f.write(data)
            print(f"{args[1]}: {len(data) // 512} blocks ({len(data)} bytes), family {RP2350_ARM_S:#010x}")
    except (Error, OSError) as e:
        print(f"elf2uf2: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
