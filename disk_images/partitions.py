"""Partition tables (MBR and GPT) and filesystem signatures of a raw disk image, in pure Python.

Reading needs no root and no tools: the image is opened read-only and only the first sectors,
the GPT entry array and each partition's superblock are read. ``grow_partition`` edits a table
in place (on a derived copy, never on a base): the MBR entry's sector count, or the GPT entry's
last LBA with both headers, the entry-array CRC and the backup header/array moved to the new end.

**Limitations**

* 512-byte logical sectors only (what QEMU/packer raw images and gem5's IDE disk use).
* MBR: the four primary entries; logical partitions inside an extended one are listed as the
  extended entry only. An MBR partition cannot pass 2 TiB.
* Only the partition that ends last on the disk can grow (the GPU images have root last).
"""

from __future__ import annotations

import os
import struct
import uuid
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

from foundation.errors import InputError

SECTOR = 512
GPT_PROTECTIVE = 0xEE
_EXTENDED = (0x05, 0x0F, 0x85)
#: GPT partition type GUIDs we name (others are reported by GUID).
GPT_TYPES = {
    "21686148-6449-6e6f-744e-656564454649": "bios_grub",
    "0fc63daf-8483-4772-8e79-3d69d8477de4": "linux",
    "c12a7328-f81f-11d2-ba4b-00a0c93ec93b": "efi",
    "0657fd6d-a4ab-43c4-84e5-0933c84b4f4f": "linux-swap",
}
_GPT_HEADER = struct.Struct("<8sIIIIQQQQ16sQIII")
_GPT_ENTRY = struct.Struct("<16s16sQQQ72s")


@dataclass(frozen=True)
class Partition:
    """One partition: 1-based ``number`` as the kernel names it (``/dev/sda<number>``)."""

    number: int
    start_bytes: int
    size_bytes: int
    fs: str | None  # ext4 | ext3 | ext2 | xfs | btrfs | vfat | swap | bios_grub | None
    type: str  # MBR: "0x83"; GPT: a name from GPT_TYPES or the type GUID
    name: str = ""

    @property
    def end_bytes(self) -> int:
        return self.start_bytes + self.size_bytes

    @property
    def root_partition(self) -> str:
        """The form gem5's ``--root-partition`` (the kernel's ``root=``) takes."""
        return f"/dev/sda{self.number}"

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Table:
    """A disk's partition table: ``kind`` is ``mbr`` or ``gpt``."""

    kind: str
    disk_bytes: int
    partitions: tuple[Partition, ...]

    def get(self, number: int) -> Partition:
        for part in self.partitions:
            if part.number == number:
                return part
        have = ", ".join(str(p.number) for p in self.partitions) or "none"
        raise InputError(f"partition {number} not found (the table has partitions: {have})")


def _pread(fd: int, offset: int, size: int) -> bytes:
    return os.pread(fd, size, offset)


def detect_fs(fd: int, start: int, gpt_type: str = "") -> str | None:
    """The filesystem at byte ``start`` from its signature (None when none is recognised)."""
    if gpt_type == "bios_grub":
        return "bios_grub"
    sb = _pread(fd, start + 1024, 1024)
    if len(sb) >= 0x68 and sb[0x38:0x3A] == b"\x53\xef":
        compat, incompat = struct.unpack_from("<II", sb, 0x5C)
        if incompat & 0x2C0:  # extents | 64bit | flex_bg
            return "ext4"
        return "ext3" if compat & 0x4 else "ext2"
    head = _pread(fd, start, 4096)
    if head[:4] == b"XFSB":
        return "xfs"
    if _pread(fd, start + 0x10040, 8) == b"_BHRfS_M":
        return "btrfs"
    if head[0x36:0x39] == b"FAT" or head[0x52:0x57] == b"FAT32":
        return "vfat"
    if head[4086:4096] in (b"SWAPSPACE2", b"SWAP-SPACE"):
        return "swap"
    return None


def _guid(raw: bytes) -> str:
    return str(uuid.UUID(bytes_le=raw))


def read_table(image: str | os.PathLike[str]) -> Table:
    """The partition table of a raw disk image (read-only). Raises ``InputError`` naming the defect."""
    path = Path(image)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise InputError(f"{path}: cannot open ({exc.strerror})") from None
    try:
        size = os.fstat(fd).st_size
        mbr = _pread(fd, 0, SECTOR)
        if len(mbr) < SECTOR or mbr[510:512] != b"\x55\xaa":
            raise InputError(
                f"{path}: no partition table (no MBR boot signature 55aa at byte 510); "
                "a raw gem5 GPU disk image starts with an MBR or a protective MBR + GPT"
            )
        entries = [struct.unpack_from("<B3sB3sII", mbr, 446 + 16 * i) for i in range(4)]
        if any(e[2] == GPT_PROTECTIVE for e in entries):
            return _read_gpt(fd, path, size)
        parts = []
        for i, (_status, _chs, ptype, _chs2, lba, count) in enumerate(entries):
            if ptype == 0 or count == 0:
                continue
            start, length = lba * SECTOR, count * SECTOR
            if start + length > size:
                raise InputError(
                    f"{path}: MBR partition {i + 1} ends at byte {start + length}, past the end of the "
                    f"{size}-byte image (truncated copy or corrupt table)"
                )
            fs = None if ptype in _EXTENDED else detect_fs(fd, start)
            parts.append(Partition(i + 1, start, length, fs, f"0x{ptype:02x}"))
        return Table("mbr", size, tuple(parts))
    finally:
        os.close(fd)


def _gpt_header(fd: int, lba: int) -> tuple | None:
    raw = _pread(fd, lba * SECTOR, SECTOR)
    if len(raw) < _GPT_HEADER.size or raw[:8] != b"EFI PART":
        return None
    fields = _GPT_HEADER.unpack_from(raw)
    header_size = fields[2]
    check = bytearray(raw[:header_size])
    check[16:20] = b"\0\0\0\0"
    if zlib.crc32(check) != fields[3]:
        return None
    return fields


def _read_gpt(fd: int, path: Path, size: int) -> Table:
    header = _gpt_header(fd, 1)
    if header is None:
        raise InputError(
            f"{path}: protective MBR but no valid GPT header at LBA 1 (bad signature or CRC); "
            "the partition table is corrupt (`sgdisk -v` shows more)"
        )
    _sig, _rev, _hsize, _hcrc, _res, _cur, _backup, _first, _last, _dguid, entries_lba, count, esize, ecrc = (
        header
    )
    array = _pread(fd, entries_lba * SECTOR, count * esize)
    if zlib.crc32(array) != ecrc:
        raise InputError(f"{path}: GPT partition-entry array fails its CRC; the partition table is corrupt")
    parts = []
    for i in range(count):
        tguid, _uguid, first, last, _attrs, name = _GPT_ENTRY.unpack_from(array, i * esize)
        if tguid == b"\0" * 16:
            continue
        type_name = GPT_TYPES.get(_guid(tguid), _guid(tguid))
        start, length = first * SECTOR, (last - first + 1) * SECTOR
        if start + length > size:
            raise InputError(
                f"{path}: GPT partition {i + 1} ends past the end of the image (truncated copy?)"
            )
        label = name.decode("utf-16-le", "replace").rstrip("\0")
        parts.append(Partition(i + 1, start, length, detect_fs(fd, start, type_name), type_name, label))
    return Table("gpt", size, tuple(parts))


def root_candidate(table: Table) -> Partition:
    """The partition that holds the root filesystem: the largest ext2/3/4 one."""
    ext = [p for p in table.partitions if p.fs in ("ext4", "ext3", "ext2")]
    if not ext:
        found = ", ".join(f"{p.number}:{p.fs or 'unknown'}" for p in table.partitions) or "no partitions"
        raise InputError(
            f"no ext4 partition in the image ({found}); gem5 GPU images keep their root on ext4, "
            "and layerlab edits only ext4"
        )
    return max(ext, key=lambda p: p.size_bytes)


def grow_partition(image: str | os.PathLike[str], number: int, new_disk_bytes: int) -> Partition:
    """Grow the file to ``new_disk_bytes`` and partition ``number`` to the new end; the new entry.

    The partition must end last on the disk. GPT: the backup entry array and header move to the
    new end of the disk and both headers' CRCs are rewritten. Only the table changes: the
    filesystem inside is grown separately (``resize2fs``).
    """
    path = Path(image)
    table = read_table(path)
    part = table.get(number)
    if any(p.start_bytes > part.start_bytes for p in table.partitions):
        raise InputError(
            f"{path}: partition {number} is not the last one on the disk; cannot grow it in place"
        )
    if new_disk_bytes % SECTOR or new_disk_bytes < table.disk_bytes:
        raise InputError(
            f"{path}: new size {new_disk_bytes} must be ≥ the current size and a multiple of 512"
        )
    new_sectors = new_disk_bytes // SECTOR
    with path.open("r+b") as handle:
        handle.truncate(new_disk_bytes)
        fd = handle.fileno()
        if table.kind == "mbr":
            first = part.start_bytes // SECTOR
            count = new_sectors - first
            if count > 0xFFFFFFFF:
                raise InputError(f"{path}: an MBR partition cannot pass 2 TiB; convert the base to GPT")
            os.pwrite(fd, struct.pack("<I", count), 446 + 16 * (number - 1) + 12)
        else:
            _grow_gpt(fd, number, new_sectors)
        os.fsync(fd)
    return read_table(path).get(number)


def _header_bytes(fields: tuple) -> bytes:
    raw = bytearray(_GPT_HEADER.pack(*fields))
    raw[16:20] = b"\0\0\0\0"
    crc = zlib.crc32(raw)
    raw[16:20] = struct.pack("<I", crc)
    return bytes(raw) + b"\0" * (SECTOR - len(raw))


def _grow_gpt(fd: int, number: int, new_sectors: int) -> None:
    header = list(_gpt_header(fd, 1))  # read_table already validated it
    old_backup = header[6]
    entries_lba, count, esize = header[10], header[11], header[12]
    array = bytearray(_pread(fd, entries_lba * SECTOR, count * esize))
    array_sectors = (count * esize + SECTOR - 1) // SECTOR
    last_lba = new_sectors - 1
    last_usable = last_lba - array_sectors - 1
    entry = list(_GPT_ENTRY.unpack_from(array, (number - 1) * esize))
    entry[3] = (last_usable + 1) // 2048 * 2048 - 1  # end on a MiB boundary, as partitioners do
    _GPT_ENTRY.pack_into(array, (number - 1) * esize, *entry)
    ecrc = zlib.crc32(array)
    # Protective MBR: its one entry covers the whole disk (capped at 2 TiB).
    os.pwrite(fd, struct.pack("<I", min(new_sectors - 1, 0xFFFFFFFF)), 446 + 12)
    # Primary header + array.
    header[6], header[8], header[13] = last_lba, last_usable, ecrc
    os.pwrite(fd, bytes(array), entries_lba * SECTOR)
    os.pwrite(fd, _header_bytes(tuple(header)), SECTOR)
    # Backup array just before the backup header at the last LBA; the old backup is wiped.
    backup = list(header)
    backup[5], backup[6], backup[10] = last_lba, 1, last_lba - array_sectors
    os.pwrite(fd, bytes(array), (last_lba - array_sectors) * SECTOR)
    os.pwrite(fd, _header_bytes(tuple(backup)), last_lba * SECTOR)
    if old_backup != last_lba and old_backup * SECTOR < new_sectors * SECTOR:
        os.pwrite(fd, b"\0" * SECTOR, old_backup * SECTOR)
