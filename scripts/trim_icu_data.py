"""Shrink Qt's ICU data library in a built bundle to what a desktop app in English needs.

    python scripts/trim_icu_data.py dist/HematoVision/_internal/PySide6/Qt/lib/libicudata.so.73

Why: libicudata is 31 MiB of tables (collation and locale names for ~800 locales, CJK/Thai word
dictionaries, ~190 legacy code pages) and the largest single file in the bundle. Qt links it, but
HematoVision shows English text, sorts with its own natural sort and reads files as UTF-8, so it needs the
root and English data only. The data blob is taken out of the library (symbol ``icudtNN_dat``), repacked
without the rest with ICU's own ``icupkg``, and linked back into a library of the same name and soname.
Anything ICU is then asked for that is gone falls back to the root locale (ICU's documented behaviour for
missing locales), not a crash. Needs ``icupkg`` (Debian: icu-devtools) and a C compiler; without them the
library is left as it is and the script says so.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

# Locale bundles look like en, en_GB, zh_Hant_TW, sr_Latn, es_419; everything else (root, pool, res_index,
# supplementalData, zoneinfo64, ...) is shared data that is always kept.
LOCALE = re.compile(r"^[a-z]{2,3}(_[A-Z][a-z]{3})?(_([A-Z]{2}|\d{3}))?(_[A-Z0-9]*)?\.res$")
KEEP_LOCALES = ("en", "en_US", "en_GB", "en_001", "en_US_POSIX")
DROP_TOP = {"langInfo.res"}  # locale matching tables, unused


def keep(item: str) -> bool:
    parts = item.split("/")
    name = parts[-1]
    if name.endswith((".cnv", ".dict", ".cfu")):
        return False  # legacy code pages, word-break dictionaries, confusable-character data
    if name in DROP_TOP:
        return False
    if name.endswith(".res") and LOCALE.match(name):
        return name[:-4] in KEEP_LOCALES
    return True


def symbol(lib: Path) -> tuple[str, int, int]:
    """(name, file offset, size) of the icudtNN_dat blob."""
    syms = subprocess.run(["readelf", "-sW", str(lib)], capture_output=True, text=True, check=True).stdout
    m = re.search(r"\s([0-9a-f]+)\s+(0x[0-9a-f]+|\d+)\s+OBJECT\s+GLOBAL\s+DEFAULT\s+(\d+)\s+(icudt\d+_dat)", syms)
    if not m:
        raise SystemExit(f"{lib}: no icudtNN_dat symbol")
    addr, size, shndx, name = int(m.group(1), 16), int(m.group(2), 0), int(m.group(3)), m.group(4)
    secs = subprocess.run(["readelf", "-SW", str(lib)], capture_output=True, text=True, check=True).stdout
    for line in secs.splitlines():
        s = re.match(r"\s*\[\s*(\d+)\]\s+\S+\s+\S+\s+([0-9a-f]+)\s+([0-9a-f]+)", line)
        if s and int(s.group(1)) == shndx:
            return name, addr - int(s.group(2), 16) + int(s.group(3), 16), size
    raise SystemExit(f"{lib}: section of {name} not found")


def main(argv: list[str]) -> int:
    lib = Path(argv[0])
    if not (shutil.which("icupkg") and shutil.which("cc")):
        print("trim_icu_data: icupkg or cc missing (apt-get install icu-devtools gcc); ICU data left whole")
        return 0
    name, offset, size = symbol(lib)
    pkg = name[:-4] + "l"  # icudt73l: little-endian package name
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        (t / "in").mkdir()
        (t / "out").mkdir()
        with open(lib, "rb") as fh:
            fh.seek(offset)
            (t / "in" / f"{pkg}.dat").write_bytes(fh.read(size))
        items = subprocess.run(
            ["icupkg", "-l", str(t / "in" / f"{pkg}.dat")], capture_output=True, text=True, check=True
        ).stdout.split()
        drop = [i for i in items if not keep(i)]
        (t / "drop.txt").write_text("\n".join(drop) + "\n")
        # --ignore-deps: root bundles name the dropped dictionaries and locales; ICU treats those as absent.
        subprocess.run(
            ["icupkg", "--ignore-deps", "-r", str(t / "drop.txt"), str(t / "in" / f"{pkg}.dat"), str(t / "out" / f"{pkg}.dat")],
            check=True,
            capture_output=True,
        )
        (t / "blob.S").write_text(
            f".section .rodata\n.globl {name}\n.type {name}, @object\n.balign 16\n{name}:\n"
            f'.incbin "{t / "out" / (pkg + ".dat")}"\n.size {name}, . - {name}\n'
            '.section .note.GNU-stack,"",@progbits\n'
        )
        new = t / lib.name
        subprocess.run(["cc", "-shared", "-nostdlib", f"-Wl,-soname,{lib.name}", "-o", str(new), str(t / "blob.S")], check=True)
        before = lib.stat().st_size
        shutil.copyfile(new, lib)
    print(
        f"trim_icu_data: kept {len(items) - len(drop)} of {len(items)} ICU data items; "
        f"{lib.name} {before / 2**20:.1f} -> {lib.stat().st_size / 2**20:.1f} MiB"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
