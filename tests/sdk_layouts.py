#!/usr/bin/env python3
"""The packages for firmware SDKs and for integrations outside the tree.

  (a) syntax: zephyr/module.yml, port/esp-idf/otakey/idf_component.yml (with
      PyYAML when it is installed, and always with a small parser of the
      subset they use, the two compared), library.json, the Kconfig files
      (blocks balanced, every config typed, every CONFIG_OTAKEY_* that the
      ports, samples and CMake files use defined there), the sample's
      partitions.csv and devicetree overlays; versions equal to the project's;
  (b) file sets: every source the Zephyr module, the ESP-IDF component and
      library.json name exists, and the core each builds is exactly the
      project's own (CMakeLists.txt: otk_common + otk_device +
      otk_crypto_mbedtls, which cmake/install.cmake's archive repeats), so an
      SDK package cannot fall behind when a file is added;
  (c) library.json's srcFilter'd sources compiled with the host gcc -std=c99
      -Wall -Wextra -Werror and the manifest's flags, and linked into a
      program that runs (the set is self-sufficient);
  (d) the Zephyr and ESP-IDF ports compiled against declarations of the SDK
      APIs they call (tests/sdk_stubs/, the configuration from the Kconfig
      defaults) and run over a RAM flash that behaves as each SDK documents;
      the samples' sources compiled the same way;
  (e) `cmake --install` of the build tree (DESTDIR, a scratch root), then
      tests/consumer built against it with find_package(otakey) ->
      otakey::device and with `pkg-config --cflags --libs otakey-device`,
      and both programs run.

Needs python3, gcc, cmake, pkg-config and libmbedtls-dev (the project's
build needs them too); no network, no SDK. Usage: tests/sdk_layouts.py
BUILD_DIR (scratch in BUILD_DIR/sdk_layouts, removed on success unless KEEP=1).
Ends with "N passed, M failed"; exit status 1 on a failure.
"""
import fnmatch
import glob
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ZEPHYR_CMAKE = ROOT / "zephyr" / "CMakeLists.txt"
ESP_DIR = ROOT / "port" / "esp-idf" / "otakey"
STUBS = ROOT / "tests" / "sdk_stubs"
WARN = ["-std=c99", "-Wall", "-Wextra", "-Werror"]

passed = 0
failed = 0


def check(cond, what, detail=""):
    global passed, failed
    if cond:
        passed += 1
        print(f"  ok    {what}")
    else:
        failed += 1
        print(f"  FAIL  {what}" + (f": {detail}" if detail else ""))
    return cond


def rel(p):
    return Path(os.path.relpath(Path(p).resolve(), ROOT)).as_posix()


def run(cmd, cwd=ROOT, env=None):
    r = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return r.returncode, r.stdout


# ---------------------------------------------------------------- parsers

def mini_yaml(text):
    """The YAML subset of the manifests: nested mappings, lists of scalars,
    plain or quoted scalars, comments. Raises ValueError on anything else."""
    lines = []
    for n, raw in enumerate(text.splitlines(), 1):
        if "\t" in raw[: len(raw) - len(raw.lstrip())]:
            raise ValueError(f"line {n}: tab in indentation")
        s, quote = "", None
        for i, ch in enumerate(raw):  # drop a comment outside quotes
            if quote:
                quote = None if ch == quote else quote
            elif ch in "\"'":
                quote = ch
            elif ch == "#" and (i == 0 or raw[i - 1].isspace()):
                break
            s += ch
        if s.strip():
            lines.append((n, len(s) - len(s.lstrip(" ")), s.strip()))

    def scalar(v, n):
        v = v.strip()
        if len(v) >= 2 and v[0] == v[-1] and v[0] in "\"'":
            return v[1:-1]
        if v[:1] in "\"'[{&*!|>" or v.endswith(":"):
            raise ValueError(f"line {n}: unsupported scalar {v!r}")
        return v

    pos = 0

    def block(indent):
        nonlocal pos
        n, ind, s = lines[pos]
        if s.startswith("- "):
            out = []
            while pos < len(lines) and lines[pos][1] == indent and lines[pos][2].startswith("- "):
                out.append(scalar(lines[pos][2][2:], lines[pos][0]))
                pos += 1
            return out
        out = {}
        while pos < len(lines) and lines[pos][1] == indent:
            n, ind, s = lines[pos]
            m = re.match(r'^([A-Za-z0-9_./-]+|"[^"]+")\s*:(?:\s+(.*))?$', s)
            if not m:
                raise ValueError(f"line {n}: not a 'key: value' line: {s!r}")
            key = m.group(1).strip('"')
            if key in out:
                raise ValueError(f"line {n}: duplicate key {key}")
            pos += 1
            if m.group(2) is not None:
                out[key] = scalar(m.group(2), n)
            elif pos < len(lines) and (lines[pos][1] > indent or
                                       (lines[pos][1] == indent and lines[pos][2].startswith("- "))):
                out[key] = block(lines[pos][1])
            else:
                out[key] = None
        if pos < len(lines) and lines[pos][1] > indent:
            raise ValueError(f"line {lines[pos][0]}: unexpected indentation")
        return out

    if not lines:
        return {}
    result = block(lines[0][1])
    if pos != len(lines):
        raise ValueError(f"line {lines[pos][0]}: unexpected indentation")
    return result


def plain(v):
    """PyYAML's result with every scalar as the text the subset parser keeps."""
    if isinstance(v, dict):
        return {str(k): plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [plain(x) for x in v]
    if isinstance(v, bool):
        return "true" if v else "false"
    return None if v is None else str(v)


def load_yaml(path, what):
    text = path.read_text()
    try:
        doc = mini_yaml(text)
    except ValueError as e:
        check(False, f"{what}: YAML", str(e))
        return None
    try:
        import yaml  # PyYAML, where installed
    except ImportError:
        check(isinstance(doc, dict), f"{what}: YAML (PyYAML not installed: the subset parser alone)")
        return doc
    try:
        full = yaml.safe_load(text)
    except yaml.YAMLError as e:
        check(False, f"{what}: YAML", str(e))
        return None
    check(plain(full) == doc, f"{what}: YAML (PyYAML and the subset parser agree)", f"{full!r} != {doc!r}")
    return full


def kconfig(path):
    """Symbols of a Kconfig file with their type and unconditional default;
    checks that its blocks balance and each symbol has a type."""
    syms, stack, cur, problems = {}, [], None, []
    for n, raw in enumerate(path.read_text().splitlines(), 1):
        s = raw.strip()
        if not s or s.startswith("#"):
            continue
        word = s.split()[0]
        if word in ("config", "menuconfig"):
            cur = s.split()[1]
            syms[cur] = {"type": None, "default": None}
        elif word in ("choice", "menu", "if"):
            stack.append((word, n))
            cur = None
        elif word in ("endchoice", "endmenu", "endif"):
            if not stack or stack[-1][0] != word[3:]:
                problems.append(f"line {n}: {word} without its {word[3:]}")
            else:
                stack.pop()
            cur = None
        elif cur and word in ("bool", "int", "string", "hex", "tristate"):
            syms[cur]["type"] = word
        elif cur and word == "default" and " if " not in s and syms[cur]["default"] is None:
            syms[cur]["default"] = s.split(None, 1)[1]
    problems += [f"{w} opened at line {n} never closed" for w, n in stack]
    problems += [f"config {k} has no type" for k, v in syms.items() if v["type"] is None]
    return syms, problems


def config_defines(syms):
    """-D flags of a build configured with the Kconfig defaults."""
    out = []
    for name, v in syms.items():
        d = v["default"]
        if v["type"] == "bool" and d == "y":
            out.append(f"-DCONFIG_{name}=1")
        elif v["type"] in ("int", "hex") and d is not None:
            out.append(f"-DCONFIG_{name}={d}")
        elif v["type"] == "string" and d is not None:
            out.append(f"-DCONFIG_{name}={d}")
    return out


def used_configs(paths):
    found = set()
    for p in paths:
        found |= {c for c in re.findall(r"CONFIG_(OTAKEY[A-Z0-9_]*)", p.read_text())
                  if not c.endswith("_")}  # not a pattern such as CONFIG_OTAKEY_*
    return found


def cmake_library(text, name):
    m = re.search(r"add_library\(\s*" + re.escape(name) + r"\s+STATIC\s+([^)]*)\)", text)
    return [t for t in m.group(1).split() if t.endswith(".c")] if m else []


def pio_sources(lib):
    """The sources PlatformIO builds for library.json: srcFilter over srcDir."""
    build = lib.get("build", {})
    src_dir = ROOT / build.get("srcDir", "src")
    filt = build.get("srcFilter", "+<*> -<.git/> -<.svn/>")
    if isinstance(filt, str):
        filt = re.findall(r"[+-]<[^>]*>", filt)
    exts = {".c", ".cc", ".cpp", ".S", ".s", ".asm", ".spp", ".sx"}
    selected = set()
    for f in filt:
        sign, pat = f[0], f[2:-1].rstrip("/")
        if sign == "+":
            for p in glob.glob(str(src_dir / pat), recursive=True):
                if os.path.isdir(p):
                    for d, _, files in os.walk(p):
                        selected |= {os.path.relpath(os.path.join(d, x), src_dir) for x in files}
                else:
                    selected.add(os.path.relpath(p, src_dir))
        else:
            selected = {s for s in selected
                        if not any(fnmatch.fnmatch("/".join(s.split("/")[:i]), pat)
                                   for i in range(1, s.count("/") + 2))}
    return sorted(rel(src_dir / s) for s in selected if Path(s).suffix in exts)


def parse_size(v):
    v = v.strip().upper()
    mult = {"K": 1024, "M": 1024 * 1024}.get(v[-1:], 1)
    v = v[:-1] if v[-1:] in "KM" else v
    return int(v, 0) * mult


# ---------------------------------------------------------------- checks

def main():
    if len(sys.argv) != 2:
        print("usage: tests/sdk_layouts.py BUILD_DIR", file=sys.stderr)
        return 2
    t0 = time.monotonic()
    build = Path(sys.argv[1]).resolve()
    work = build / "sdk_layouts"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)

    top = (ROOT / "CMakeLists.txt").read_text()
    m = re.search(r"project\(otakey\s+VERSION\s+([0-9.]+)", top)
    version = m.group(1) if m else None
    check(version is not None, f"project version from CMakeLists.txt: {version}")
    core = sorted(cmake_library(top, "otk_common") + cmake_library(top, "otk_device") +
                  cmake_library(top, "otk_crypto_mbedtls"))
    print(f"the project's device core + codec + mbedTLS crypto port: {' '.join(core)}")
    check(len(core) >= 6 and all((ROOT / c).is_file() for c in core),
          "CMakeLists.txt: otk_common, otk_device and otk_crypto_mbedtls name existing sources")
    installed = sorted(cmake_library((ROOT / "cmake" / "install.cmake").read_text(), "otk_device_install"))
    psa = cmake_library(top, "otk_crypto_psa")
    check(installed == sorted(core + psa),
          "cmake/install.cmake: libotakey-device.a has the same sources, and the PSA crypto port",
          f"{installed} != {sorted(core + psa)}")
    core_only = [c for c in core if not c.endswith("crypto_mbedtls.c")]
    crypto_port = [c for c in core if c.endswith("crypto_mbedtls.c")]
    compat = ROOT / "port" / "mbedtls" / "otk_mbedtls_compat.h"

    print("\n(a) Zephyr module: zephyr/module.yml, zephyr/Kconfig, zephyr/CMakeLists.txt")
    mod = load_yaml(ROOT / "zephyr" / "module.yml", "zephyr/module.yml")
    if mod is not None:
        b = mod.get("build") or {}
        check(mod.get("name") == "otakey", "module.yml: name otakey")
        check(b.get("cmake") == "zephyr" and ZEPHYR_CMAKE.is_file(),
              "module.yml: build.cmake is zephyr/, which has a CMakeLists.txt")
        check(b.get("kconfig") == "zephyr/Kconfig" and (ROOT / "zephyr" / "Kconfig").is_file(),
              "module.yml: build.kconfig zephyr/Kconfig exists")
        check(all((ROOT / s).is_dir() for s in mod.get("samples") or []) and mod.get("samples"),
              "module.yml: its samples directories exist")
    zsyms, problems = kconfig(ROOT / "zephyr" / "Kconfig")
    check(not problems and "OTAKEY" in zsyms, "zephyr/Kconfig: blocks balanced, every config typed",
          "; ".join(problems))
    zephyr_files = [ZEPHYR_CMAKE] + sorted((ROOT / "port" / "zephyr").glob("*")) + \
        sorted(p for p in (ROOT / "samples" / "zephyr").rglob("*") if p.is_file())
    missing = used_configs(zephyr_files) - set(zsyms)
    check(not missing, "every CONFIG_OTAKEY_* of the module, the port and the sample is in zephyr/Kconfig",
          " ".join(sorted(missing)))
    ztext = ZEPHYR_CMAKE.read_text()
    zsrc = sorted(rel(ROOT / p) for call in re.findall(r"zephyr_library_sources\(([^)]*)\)", ztext)
                  for p in re.findall(r"\$\{OTK_ROOT\}/(\S+?\.c)\b", call))
    zinc = re.findall(r"\$\{OTK_ROOT\}/(\S+?)[\s)\"]", ztext)
    check(all((ROOT / p).exists() for p in zsrc + zinc),
          "zephyr/CMakeLists.txt: every source, include directory and header it names exists",
          " ".join(p for p in zsrc + zinc if not (ROOT / p).exists()))
    check(sorted(p for p in zsrc if not p.startswith("port/zephyr/")) == sorted(core + psa),
          "zephyr/CMakeLists.txt builds exactly the project's core, codec and crypto ports (mbedTLS, PSA)",
          f"{zsrc}")
    for ov in sorted((ROOT / "samples" / "zephyr").rglob("*.overlay")):
        t = ov.read_text()
        m = re.search(r"otakey_partition:\s*partition@([0-9a-fA-F]+)\s*\{[^}]*?reg\s*=\s*<\s*"
                      r"(0x[0-9a-fA-F]+)\s+(0x[0-9a-fA-F]+)\s*>", t)
        check(m is not None and int(m.group(1), 16) == int(m.group(2), 16) and
              int(m.group(3), 16) >= 2 * 256 and t.count("{") == t.count("}"),
              f"{rel(ov)}: an otakey_partition fixed partition (unit address = reg, two slots)")
    prj = ROOT / "samples" / "zephyr" / "claim" / "prj.conf"
    check(re.search(r"^CONFIG_OTAKEY=y$", prj.read_text(), re.M) is not None,
          "samples/zephyr/claim/prj.conf enables CONFIG_OTAKEY")

    print("\n(a) ESP-IDF component: port/esp-idf/otakey (idf_component.yml, Kconfig, CMakeLists.txt)")
    comp = load_yaml(ESP_DIR / "idf_component.yml", "idf_component.yml")
    if comp is not None:
        check(comp.get("version") == version, f"idf_component.yml: version {comp.get('version')} is the project's")
        check(isinstance(comp.get("dependencies"), dict) and "idf" in comp["dependencies"],
              "idf_component.yml: depends on an ESP-IDF version")
    esyms, problems = kconfig(ESP_DIR / "Kconfig")
    check(not problems and "OTAKEY_PARTITION_LABEL" in esyms,
          "port/esp-idf/otakey/Kconfig: blocks balanced, every config typed", "; ".join(problems))
    esp_files = sorted(p for p in ESP_DIR.iterdir() if p.is_file()) + \
        sorted(p for p in (ROOT / "samples" / "esp-idf").rglob("*") if p.is_file())
    missing = used_configs(esp_files) - set(esyms)
    check(not missing, "every CONFIG_OTAKEY_* of the component and the sample is in its Kconfig",
          " ".join(sorted(missing)))
    etext = (ESP_DIR / "CMakeLists.txt").read_text()
    check("idf_component_register(" in etext, "CMakeLists.txt calls idf_component_register")
    esrc = sorted(rel(ESP_DIR / p) for p in re.findall(r'"([^"$]+\.c)"', etext))
    m = re.search(r"INCLUDE_DIRS((?:\s+\"[^\"]+\")+)", etext)
    einc = re.findall(r'"([^"]+)"', m.group(1)) if m else []
    check(einc and all((ESP_DIR / p).is_dir() for p in einc) and
          all((ESP_DIR / p).is_file() for p in re.findall(r'"([^"$]+\.c)"', etext)),
          "CMakeLists.txt: every source and include directory it names exists")
    check("port/mbedtls/otk_mbedtls_compat.h" in etext and compat.is_file(),
          "CMakeLists.txt: the mbedTLS 3 compatibility header it forces in exists")
    check(sorted(p for p in esrc if not p.startswith("port/esp-idf/")) == core,
          "CMakeLists.txt builds exactly the project's core, codec and crypto port", f"{esrc}")
    label = (esyms.get("OTAKEY_PARTITION_LABEL") or {}).get("default", "").strip('"')
    rows = [[c.strip() for c in line.split(",")]
            for line in (ROOT / "samples" / "esp-idf" / "claim" / "partitions.csv").read_text().splitlines()
            if line.strip() and not line.lstrip().startswith("#")]
    row = next((r for r in rows if r and r[0] == label), None)
    ok = row is not None and len(row) >= 5 and row[1] == "data"
    size = parse_size(row[4]) if ok else 0
    check(ok and size >= 2 * 4096 and size % 4096 == 0 and all(len(r) >= 5 for r in rows),
          f"samples/esp-idf/claim/partitions.csv: a data partition '{label}' of two or more 4 KiB sectors")
    defaults = (ROOT / "samples" / "esp-idf" / "claim" / "sdkconfig.defaults").read_text()
    check("CONFIG_MBEDTLS_HKDF_C=y" in defaults and 'CONFIG_PARTITION_TABLE_CUSTOM_FILENAME="partitions.csv"' in defaults,
          "samples/esp-idf/claim/sdkconfig.defaults: HKDF on, the custom partition table")
    check("include($ENV{IDF_PATH}/tools/cmake/project.cmake)" in
          (ROOT / "samples" / "esp-idf" / "claim" / "CMakeLists.txt").read_text(),
          "samples/esp-idf/claim/CMakeLists.txt is an ESP-IDF project")

    print("\n(a) PlatformIO: library.json")
    try:
        lib = json.loads((ROOT / "library.json").read_text())
    except ValueError as e:
        check(False, "library.json: JSON", str(e))
        lib = None
    pio = []
    if lib is not None:
        check(True, "library.json: JSON")
        check(lib.get("name") == "otakey" and lib.get("version") == version,
              f"library.json: name otakey, version {lib.get('version')} is the project's")
        inc = (lib.get("build") or {}).get("includeDir", "include")
        check((ROOT / inc / "otakey" / "device.h").is_file(), f"library.json: includeDir {inc} has otakey/device.h")
        pio = pio_sources(lib)
        check(all((ROOT / p).is_file() for p in pio) and pio == core,
              "library.json: srcFilter selects exactly the project's core, codec and crypto port", f"{pio}")

    print("\n(c) library.json's sources with the host compiler")
    if lib is not None and pio:
        flags = ["-I", str(ROOT / inc)]
        for f in (lib.get("build") or {}).get("flags", []):
            flags += shlex.split(f)
        objs, errors = [], []
        for src in pio:
            obj = work / "pio" / (Path(src).stem + ".o")
            obj.parent.mkdir(exist_ok=True)
            rc, out = run(["gcc"] + WARN + flags + ["-c", src, "-o", str(obj)])
            if rc:
                errors.append(out)
            objs.append(str(obj))
        check(not errors, f"gcc {' '.join(WARN)} {' '.join(flags)}: {len(pio)} objects", "".join(errors)[:2000])
        exe = work / "pio" / "claim"
        rc, out = run(["gcc"] + WARN + ["-pedantic", "-I", str(ROOT / inc), str(ROOT / "tests/consumer/claim.c")] +
                      objs + ["-lmbedcrypto", "-o", str(exe)])
        check(rc == 0, "they link into tests/consumer/claim.c with -lmbedcrypto alone", out[:2000])
        if rc == 0:
            rc, out = run([str(exe)])
            check(rc == 0 and "CLAIM of 122 bytes" in out, "and the program runs: " + out.strip().replace("\n", "; "))

    print("\n(d) the SDK ports against declarations of the SDK APIs (tests/sdk_stubs)")
    core_srcs = [str(ROOT / c) for c in core_only]
    crypto = ["-include", "otk_mbedtls_compat.h", "-I", str(compat.parent)] + [str(ROOT / c) for c in crypto_port]
    zdefs = ["-DCONFIG_OTAKEY=1"] + config_defines(zsyms)
    exe = work / "zephyr_port_check"
    rc, out = run(["gcc"] + WARN + ["-D_POSIX_C_SOURCE=200809L"] + zdefs +
                  ["-I", str(ROOT / "include"), "-I", str(ROOT / "port/zephyr"), "-I", str(STUBS / "zephyr"),
                   str(STUBS / "zephyr_port_check.c"), str(ROOT / "port/zephyr/otakey_zephyr.c")] +
                  core_srcs + crypto + ["-lmbedcrypto", "-o", str(exe)])
    check(rc == 0, f"port/zephyr/otakey_zephyr.c compiles ({' '.join(zdefs)})", out[:3000])
    if rc == 0:
        rc, out = run([str(exe)])
        check(rc == 0, "zephyr_port_check: " + out.strip().splitlines()[-1], out[-3000:])
    # The PSA variant: CONFIG_OTAKEY_CRYPTO_PSA instead of the mbedTLS port.
    zpsa = [d for d in zdefs if not d.startswith("-DCONFIG_OTAKEY_CRYPTO_MBEDTLS=")] + \
        ["-DCONFIG_OTAKEY_CRYPTO_PSA=1", "-DCONFIG_OTAKEY_PSA_KEY_BASE=" + zsyms["OTAKEY_PSA_KEY_BASE"]["default"]]
    rc, out = run(["gcc"] + WARN + ["-D_POSIX_C_SOURCE=200809L"] + zpsa +
                  ["-I", str(ROOT / "include"), "-I", str(ROOT / "port/zephyr"), "-I", str(STUBS / "zephyr"),
                   "-c", str(ROOT / "port/zephyr/otakey_zephyr.c"), "-o", str(work / "zephyr_psa.o")])
    check(rc == 0, "port/zephyr/otakey_zephyr.c compiles with CONFIG_OTAKEY_CRYPTO_PSA", out[:3000])
    rc, out = run(["gcc"] + WARN + ["-D_POSIX_C_SOURCE=200809L"] + zdefs +
                  ["-I", str(ROOT / "include"), "-I", str(ROOT / "port/zephyr"), "-I", str(STUBS / "zephyr"),
                   "-c", str(ROOT / "samples/zephyr/claim/src/main.c"), "-o", str(work / "zephyr_sample.o")])
    check(rc == 0, "samples/zephyr/claim/src/main.c compiles", out[:3000])
    sdkconfig = work / "esp-idf" / "sdkconfig.h"
    sdkconfig.parent.mkdir()
    sdkconfig.write_text("/* the otakey component's Kconfig defaults */\n" + "".join(
        "#define " + d[2:].replace("=", " ", 1) + "\n" for d in config_defines(esyms)))
    exe = work / "esp_port_check"
    rc, out = run(["gcc"] + WARN + ["-D_POSIX_C_SOURCE=200809L", "-I", str(ROOT / "include"), "-I", str(ESP_DIR),
                                    "-I", str(sdkconfig.parent), "-I", str(STUBS / "esp-idf"),
                                    str(STUBS / "esp_port_check.c"), str(ESP_DIR / "otakey_esp.c")] +
                  core_srcs + crypto + ["-lmbedcrypto", "-o", str(exe)])
    check(rc == 0, "port/esp-idf/otakey/otakey_esp.c compiles (sdkconfig.h from the Kconfig defaults)", out[:3000])
    if rc == 0:
        rc, out = run([str(exe)])
        check(rc == 0, "esp_port_check: " + out.strip().splitlines()[-1], out[-3000:])
    rc, out = run(["gcc"] + WARN + ["-D_POSIX_C_SOURCE=200809L", "-I", str(ROOT / "include"), "-I", str(ESP_DIR),
                                    "-I", str(sdkconfig.parent), "-I", str(STUBS / "esp-idf"),
                                    "-c", str(ROOT / "samples/esp-idf/claim/main/main.c"),
                                    "-o", str(work / "esp_sample.o")])
    check(rc == 0, "samples/esp-idf/claim/main/main.c compiles", out[:3000])

    print("\n(e) the installed CMake package and pkg-config file, used by tests/consumer")
    cache_file = build / "CMakeCache.txt"
    cache = {}
    if check(cache_file.is_file(), f"build tree {build}"):
        for line in cache_file.read_text().splitlines():
            m = re.match(r"^([A-Za-z0-9_]+):[A-Z]+=(.*)$", line)
            if m:
                cache[m.group(1)] = m.group(2)
        root = work / "root"
        env = dict(os.environ, DESTDIR=str(root))
        rc, out = run(["cmake", "--install", str(build)], env=env)
        check(rc == 0, f"DESTDIR={root} cmake --install {build}", out[-3000:])
        prefix = root / cache.get("CMAKE_INSTALL_PREFIX", "/usr/local").lstrip("/")
        configs = sorted(root.rglob("otakeyConfig.cmake"))
        pcs = sorted(root.rglob("otakey-device.pc"))
        check(rc == 0 and configs and pcs, "it installs otakeyConfig.cmake and otakey-device.pc")
        san = []
        if cache.get("CMAKE_BUILD_TYPE") == "Sanitize" or cache.get("OTK_FUZZ") == "ON":
            san = ["-fsanitize=address,undefined"]  # the archive is instrumented
        cc = cache.get("CMAKE_C_COMPILER") or "cc"
        if configs and pcs:
            cbuild = work / "consumer-cmake"
            rc, out = run(["cmake", "-S", str(ROOT / "tests/consumer"), "-B", str(cbuild),
                           f"-DCMAKE_C_COMPILER={cc}", f"-DCMAKE_PREFIX_PATH={prefix}",
                           "-DCMAKE_C_FLAGS=" + " ".join(["-Wall", "-Wextra", "-Werror"] + san),
                           "-DCMAKE_EXE_LINKER_FLAGS=" + " ".join(san)])
            if rc == 0:
                rc, out = run(["cmake", "--build", str(cbuild)])
            found = ""
            if (cbuild / "CMakeCache.txt").is_file():
                m = re.search(r"^otakey_DIR:[A-Z]+=(.*)$", (cbuild / "CMakeCache.txt").read_text(), re.M)
                found = m.group(1) if m else ""
            check(rc == 0 and found.startswith(str(root)),
                  "find_package(otakey 0.1 COMPONENTS device) -> otakey::device: built against the install",
                  (out[-3000:] if rc else f"otakey_DIR={found}"))
            if rc == 0:
                rc, out = run([str(cbuild / "claim")])
                check(rc == 0 and "key store: version 1 committed" in out,
                      "the CMake consumer runs: " + out.strip().replace("\n", "; "), out)
            penv = dict(os.environ, PKG_CONFIG_LIBDIR=str(pcs[0].parent), PKG_CONFIG_PATH="",
                        PKG_CONFIG_SYSROOT_DIR=str(root))
            rc, mv = run(["pkg-config", "--modversion", "otakey-device"], env=penv)
            check(rc == 0 and mv.strip() == version, f"pkg-config --modversion otakey-device: {mv.strip()}")
            rc, fl = run(["pkg-config", "--cflags", "--libs", "otakey-device"], env=penv)
            check(rc == 0 and str(root) in fl, f"pkg-config --cflags --libs otakey-device: {fl.strip()}")
            exe = work / "claim-pc"
            rc, out = run([cc] + WARN + ["-pedantic"] + san + [str(ROOT / "tests/consumer/claim.c"), "-o", str(exe)] +
                          shlex.split(fl))
            check(rc == 0, "the pkg-config consumer builds (-std=c99 -pedantic -Werror)", out[-3000:])
            if rc == 0:
                rc, out = run([str(exe)])
                check(rc == 0 and "key store: version 1 committed" in out,
                      "the pkg-config consumer runs: " + out.strip().replace("\n", "; "), out)

    print(f"\nsdk_layouts: {time.monotonic() - t0:.1f} s")
    if failed == 0 and not os.environ.get("KEEP"):
        shutil.rmtree(work, ignore_errors=True)
    elif failed:
        print(f"scratch kept in {work}")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
