#!/usr/bin/env python3
"""Checks Shoal's hand-written Wasmtime C-API declarations (src/runtime/wt.h) against the wheel.

The wheel ships libwasmtime.so but no C headers; its generated ctypes module `_bindings.py` is the
machine-readable statement of the ABI at exactly that version. This test compares:
  (a) struct/union sizes, alignments, field offsets, field sizes and field types, using the
      `abi_layout` tool compiled against the header, and the sizes DESIGN.md names;
  (b) every function declaration and every typedef in the header against `_bindings.py`
      (existence, argument count, each argument and return type);
  (c) that every declared function is exported by libwasmtime.so (`nm -D --defined-only`), that the
      library Shoal links is the one the bindings describe, and that the header's stated version
      is the wheel's version.
Then it mutates the header text in memory several ways and asserts each mutant is rejected, so the
checker is shown able to fail.

Usage: test_wasmtime_abi.py [--header PATH]   (with --header: check that file only, no self-test)
Environment: SHOAL_SOURCE_DIR, SHOAL_BUILD_DIR, SHOAL_DEPS (all defaulted from this file's location).
"""
import argparse
import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("SHOAL_SOURCE_DIR", os.path.dirname(HERE))
BUILD_DIR = os.environ.get("SHOAL_BUILD_DIR", "")
DEPS = os.environ.get("SHOAL_DEPS", os.path.join(SOURCE_DIR, ".deps"))
WHEEL_DIR = os.path.join(DEPS, "wasmtime", "py")
LIB = os.path.join(DEPS, "wasmtime", "lib", "libwasmtime.so")
HEADER = os.path.join(SOURCE_DIR, "src", "runtime", "wt.h")
LAYOUT_SRC = os.path.join(SOURCE_DIR, "tests", "tools", "abi_layout.c")

# Our names for private/anonymous members differ from the generator's (C identifiers starting with
# `__` are reserved, `global` is a Python keyword).
FIELD_NAME_MAP = {
    "private_": "__private",
    "private1": "__private1",
    "private2": "__private2",
    "private3": "__private3",
    "anon": "_anon_1",
    "global": "global_",
}
# Members that exist only to give a union its full size; the bindings name every member instead.
PADDING_FIELDS = {"pad"}
# Field types that differ in spelling but not in representation. Key: (struct, field).
FIELD_TYPE_EQUIVALENT = {
    # We read the bytes as text; the bindings use wasm_byte_t (unsigned char). Both are 1-byte.
    ("wasm_byte_vec_t", "data"): (("ptr", ("char",)), ("ptr", ("int", False, 8))),
}
# DESIGN.md: sizes that hand-written declarations are known to get wrong.
DESIGN_SIZES = {"wasmtime_val_t": 32, "wasmtime_memory_t": 24, "wasmtime_extern_t": 32, "wasmtime_func_t": 16}

C_SCALARS = {
    "void": ("void",),
    "bool": ("bool",),
    "char": ("char",),
    "int": ("int", True, 32),
    "int8_t": ("int", True, 8),
    "uint8_t": ("int", False, 8),
    "int16_t": ("int", True, 16),
    "uint16_t": ("int", False, 16),
    "int32_t": ("int", True, 32),
    "uint32_t": ("int", False, 32),
    "int64_t": ("int", True, 64),
    "uint64_t": ("int", False, 64),
    # LP64 (the only target the wheel supports): ctypes.c_size_t *is* c_uint64, so the bindings
    # cannot tell the two apart; neither can the ABI.
    "size_t": ("int", False, 64),
    "float": ("float", 32),
    "double": ("float", 64),
}
QUALIFIERS = {"const", "volatile", "restrict"}


class ParseError(Exception):
    pass


# ---------------------------------------------------------------- type model and rendering
# Types are tuples: ("void",) ("bool",) ("char",) ("int", signed, bits) ("float", bits) ("ptr", T)
# ("struct", name-without-_t) ("array", T, n) ("fn", ret, (params...)) ("anon", ((field, T), ...))
# and, for top-level declarations only, ("func", ret, (params...)).


def strip_t(name):
    return name[:-2] if name.endswith("_t") else name


def render(t):
    k = t[0]
    if k in ("void", "bool", "char"):
        return k
    if k == "int":
        return "%sint%d_t" % ("" if t[1] else "u", t[2])
    if k == "float":
        return "float" if t[1] == 32 else "double"
    if k == "ptr":
        return render(t[1]) + "*"
    if k == "struct":
        return "struct " + t[1]
    if k == "array":
        return "%s[%d]" % (render(t[1]), t[2])
    if k in ("fn", "func"):
        return "%s (%s)(%s)" % (render(t[1]), "*" if k == "fn" else "", ", ".join(render(p) for p in t[2]))
    if k == "anon":
        return "struct { %s }" % " ".join("%s %s;" % (render(ft), fn) for fn, ft in t[1])
    return repr(t)


def canon_ctypes(t):
    """The ctypes type object `t` in the same tuple form as parsed C types."""
    if t is None:
        return ("void",)
    if not isinstance(t, type):
        raise ParseError("not a ctypes type: %r" % (t,))
    if issubclass(t, ctypes._Pointer):
        return ("ptr", canon_ctypes(t._type_))
    if issubclass(t, ctypes._CFuncPtr):
        return ("fn", canon_ctypes(t._restype_), tuple(canon_ctypes(a) for a in t._argtypes_))
    if issubclass(t, ctypes.Array):
        return ("array", canon_ctypes(t._type_), t._length_)
    if issubclass(t, (ctypes.Structure, ctypes.Union)):
        return ("struct", strip_t(t.__name__))
    if issubclass(t, ctypes._SimpleCData):
        code = t._type_
        if code == "?":
            return ("bool",)
        if code == "c":
            return ("char",)
        if code in "bhilq":
            return ("int", True, 8 * ctypes.sizeof(t))
        if code in "BHILQ":
            return ("int", False, 8 * ctypes.sizeof(t))
        if code in "fd":
            return ("float", 8 * ctypes.sizeof(t))
        if code == "P":
            return ("ptr", ("void",))
        if code == "z":
            return ("ptr", ("char",))
    raise ParseError("unsupported ctypes type %r" % (t,))


def mismatch(c, p, callback_return=False):
    """None when C type `c` and canonical ctypes type `p` agree, else a short reason."""
    if callback_return and c[0] == "ptr" and p == ("int", False, 64):
        # The generator renders pointer-returning callbacks with a c_size_t return (a ctypes
        # callback cannot return a POINTER). Same register, same width: accepted for callbacks only.
        return None
    if c[0] != p[0]:
        return "%s vs %s" % (render(c), render(p))
    if c[0] == "ptr":
        inner = mismatch(c[1], p[1])
        return None if inner is None else "%s vs %s" % (render(c), render(p))
    if c[0] == "array":
        if c[2] != p[2]:
            return "%s vs %s" % (render(c), render(p))
        inner = mismatch(c[1], p[1])
        return None if inner is None else "%s vs %s" % (render(c), render(p))
    if c[0] == "fn":
        if len(c[2]) != len(p[2]):
            return "callback takes %d argument(s) in header, %d in bindings (%s vs %s)" % (
                len(c[2]), len(p[2]), render(c), render(p))
        why = mismatch(c[1], p[1], callback_return=True)
        if why:
            return "callback return: " + why
        for i, (ca, pa) in enumerate(zip(c[2], p[2])):
            why = mismatch(ca, pa)
            if why:
                return "callback arg %d: %s" % (i + 1, why)
        return None
    return None if c == p else "%s vs %s" % (render(c), render(p))


# ---------------------------------------------------------------- C declaration parser

TOKEN_RE = re.compile(r"\s*(?:([A-Za-z_]\w*)|(\d+)|(\.\.\.|[*()\[\],{};]))")


def strip_comments_and_directives(text):
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"//[^\n]*", " ", text)
    return "\n".join(line for line in text.split("\n") if not line.lstrip().startswith("#"))


def tokenize(text):
    tokens, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        m = TOKEN_RE.match(text, pos)
        if not m or m.end() == pos:
            raise ParseError("unexpected character %r in %r" % (text[pos:pos + 1], text.strip()[:80]))
        tokens.append(m.group(m.lastindex))
        pos = m.end()
    return tokens


def split_statements(text):
    """Top-level statements (everything up to a `;` outside braces), whitespace-joined."""
    out, cur, depth = [], [], 0
    for ch in text:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth < 0:
                raise ParseError("unbalanced '}'")
        if ch == ";" and depth == 0:
            out.append(" ".join("".join(cur).split()))
            cur = []
        else:
            cur.append(ch)
    if "".join(cur).strip():
        raise ParseError("text after the last ';': %r" % "".join(cur).strip()[:80])
    return [s for s in out if s]


def matching(tokens, i, open_tok, close_tok):
    depth = 0
    for j in range(i, len(tokens)):
        if tokens[j] == open_tok:
            depth += 1
        elif tokens[j] == close_tok:
            depth -= 1
            if depth == 0:
                return j
    raise ParseError("no matching %r in %s" % (close_tok, " ".join(tokens)))


class Header:
    """The declarations of a header in Shoal's wt.h style: typedefs, struct/union definitions and
    function prototypes, one declaration per statement."""

    def __init__(self, text):
        self.typedefs = {}   # name -> resolved type
        self.structs = {}    # typedef name -> (kind 'struct'|'union', [(field, type)])
        self.functions = {}  # name -> ("func", ret, params)
        self.order = []      # function names in declaration order
        for stmt in split_statements(strip_comments_and_directives(text)):
            self._statement(tokenize(stmt), stmt)

    def _statement(self, toks, stmt):
        if toks[0] == "typedef":
            rest = toks[1:]
            if "{" in rest:
                self._struct_typedef(rest, stmt)
                return
            name, t = self.declarator(rest)
            if name is None:
                raise ParseError("typedef without a name: %s" % stmt)
            if t[0] == "func":
                raise ParseError("function typedefs are not used: %s" % stmt)
            self.typedefs[name] = t
            return
        name, t = self.declarator(toks)
        if name is None or t[0] != "func":
            raise ParseError("expected a function declaration: %s" % stmt)
        if name in self.functions:
            raise ParseError("function %s declared twice" % name)
        self.functions[name] = t
        self.order.append(name)

    def _struct_typedef(self, rest, stmt):
        kind = rest[0]
        if kind not in ("struct", "union"):
            raise ParseError("expected struct or union: %s" % stmt)
        tag = rest[1] if rest[1] != "{" else None
        open_i = rest.index("{")
        close_i = matching(rest, open_i, "{", "}")
        tail = rest[close_i + 1:]
        if len(tail) != 1:
            raise ParseError("expected exactly one typedef name after '}': %s" % stmt)
        name = tail[0]
        fields = self.fields(rest[open_i + 1:close_i], stmt)
        self.structs[name] = (kind, fields)
        self.typedefs[name] = ("struct", strip_t(tag or name))

    def fields(self, body, stmt):
        fields, i = [], 0
        while i < len(body):
            j = i
            while j < len(body) and body[j] != ";":
                if body[j] == "{":
                    j = matching(body, j, "{", "}")
                j += 1
            part = body[i:j]
            i = j + 1
            if not part:
                continue
            if part[0] in ("struct", "union") and len(part) > 1 and part[1] == "{":
                close = matching(part, 1, "{", "}")
                if len(part) != close + 2:
                    raise ParseError("nested aggregate needs exactly one member name: %s" % stmt)
                fields.append((part[-1], ("anon", tuple(self.fields(part[2:close], stmt)))))
                continue
            fname, ftype = self.declarator(part)
            if fname is None or ftype[0] == "func":
                raise ParseError("bad member %r in %s" % (" ".join(part), stmt))
            fields.append((fname, ftype))
        return fields

    def base_type(self, name):
        if name in C_SCALARS:
            return C_SCALARS[name]
        if name in self.typedefs:
            return self.typedefs[name]
        raise ParseError("unknown type name %r" % name)

    def declarator(self, toks):
        """(name or None, type) for one declaration: base type, `*`s, then a name, a function
        parameter list, an array suffix, or a `(*name)(params)` function pointer."""
        i, n = 0, len(toks)
        while i < n and toks[i] in QUALIFIERS:
            i += 1
        if i >= n:
            raise ParseError("missing type in %r" % " ".join(toks))
        if toks[i] in ("struct", "union"):
            if i + 1 >= n or not re.match(r"[A-Za-z_]\w*$", toks[i + 1]):
                raise ParseError("bad struct reference in %r" % " ".join(toks))
            t = ("struct", strip_t(toks[i + 1]))
            i += 2
        elif re.match(r"[A-Za-z_]\w*$", toks[i]):
            if toks[i] in ("unsigned", "signed", "long", "short"):
                raise ParseError("multi-word C types are not supported: %r" % " ".join(toks))
            t = self.base_type(toks[i])
            i += 1
        else:
            raise ParseError("expected a type in %r" % " ".join(toks))
        while i < n and (toks[i] == "*" or toks[i] in QUALIFIERS):
            if toks[i] == "*":
                t = ("ptr", t)
            i += 1
        name = None
        if i < n and toks[i] == "(" and i + 1 < n and toks[i + 1] == "*":
            close = matching(toks, i, "(", ")")
            inner = [x for x in toks[i + 2:close] if x not in QUALIFIERS]
            if len(inner) > 1 or (inner and not re.match(r"[A-Za-z_]\w*$", inner[0])):
                raise ParseError("unsupported function-pointer declarator in %r" % " ".join(toks))
            name = inner[0] if inner else None
            if close + 1 >= n or toks[close + 1] != "(":
                raise ParseError("function pointer without parameters in %r" % " ".join(toks))
            pclose = matching(toks, close + 1, "(", ")")
            t = ("fn", t, self.params(toks[close + 2:pclose]))
            i = pclose + 1
        elif i < n and re.match(r"[A-Za-z_]\w*$", toks[i]):
            name = toks[i]
            i += 1
            if i < n and toks[i] == "(":
                pclose = matching(toks, i, "(", ")")
                t = ("func", t, self.params(toks[i + 1:pclose]))
                i = pclose + 1
            while i < n and toks[i] == "[":
                if i + 2 < n and toks[i + 1].isdigit() and toks[i + 2] == "]":
                    t = ("array", t, int(toks[i + 1]))
                    i += 3
                elif i + 1 < n and toks[i + 1] == "]":
                    t = ("array", t, None)
                    i += 2
                else:
                    raise ParseError("unsupported array bound in %r" % " ".join(toks))
        if i != n:
            raise ParseError("cannot parse %r (stopped at %r)" % (" ".join(toks), toks[i]))
        return name, t

    def params(self, toks):
        if toks == ["void"]:
            return ()
        if not toks:
            raise ParseError("empty parameter list: write (void)")
        parts, cur, depth = [], [], 0
        for tok in toks:
            if tok == "(":
                depth += 1
            elif tok == ")":
                depth -= 1
            if tok == "," and depth == 0:
                parts.append(cur)
                cur = []
            else:
                cur.append(tok)
        parts.append(cur)
        out = []
        for part in parts:
            if part == ["..."]:
                raise ParseError("variadic functions are not supported")
            _, t = self.declarator(part)
            if t[0] == "array":  # parameters of array type are pointers
                t = ("ptr", t[1])
            if t[0] == "func":
                raise ParseError("function-typed parameter in %r" % " ".join(part))
            out.append(t)
        return tuple(out)


# ---------------------------------------------------------------- the checks


class Checker:
    def __init__(self, verbose=True):
        self.checks = 0
        self.failures = []
        self.verbose = verbose

    def check(self, ok, message):
        self.checks += 1
        if not ok:
            self.failures.append(message)
            if self.verbose:
                print("FAIL: " + message)
        return ok


def load_bindings():
    if not os.path.isdir(os.path.join(WHEEL_DIR, "wasmtime")):
        print("FAIL: unpacked wasmtime wheel not found at %s (run scripts/setup.sh)" % WHEEL_DIR)
        sys.exit(1)
    sys.path.insert(0, WHEEL_DIR)
    import wasmtime._bindings as b  # loads the wheel's _libwasmtime.so through ctypes
    from wasmtime import _ffi
    return b, _ffi.filename


def layout_from_binary(path):
    out = subprocess.run([path], check=True, capture_output=True, text=True).stdout
    return out.splitlines()


def layout_for_header(header_text, workdir):
    """Compiles tests/tools/abi_layout.c against `header_text` (as runtime/wt.h) and runs it."""
    inc = os.path.join(workdir, "inc", "runtime")
    os.makedirs(inc, exist_ok=True)
    with open(os.path.join(inc, "wt.h"), "w") as f:
        f.write(header_text)
    exe = os.path.join(workdir, "abi_layout")
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        raise RuntimeError("no C compiler found to build abi_layout against a mutated header")
    r = subprocess.run([cc, "-std=c11", "-Wall", "-Wextra", "-I", os.path.join(workdir, "inc"),
                        LAYOUT_SRC, "-o", exe], capture_output=True, text=True)
    if r.returncode != 0:
        return None, r.stderr.strip()
    return layout_from_binary(exe), None


def parse_layout(lines):
    structs, fields = {}, {}
    for line in lines:
        parts = line.split()
        if parts[0] == "struct" and len(parts) == 4:
            structs[parts[1]] = (int(parts[2]), int(parts[3]))
        elif parts[0] == "field" and len(parts) == 4:
            sname, fpath = parts[1].split(".", 1)
            fields.setdefault(sname, []).append((fpath, int(parts[2]), int(parts[3])))
        else:
            raise ParseError("bad abi_layout line %r" % line)
    return structs, fields


def ctypes_field(cls, name):
    for fname, ftype in cls._fields_:
        if fname == name:
            return getattr(cls, fname), ftype
    return None, None


def check_layout(ck, hdr, layout_lines, b):
    structs, fields = parse_layout(layout_lines)
    ck.check(set(structs) == set(hdr.structs),
             "abi_layout.c covers structs %s but the header defines %s" % (sorted(structs), sorted(hdr.structs)))
    for sname, (size, align) in sorted(structs.items()):
        cls = getattr(b, sname, None)
        if not ck.check(cls is not None, "struct %s: not in bindings" % sname):
            continue
        ck.check(size == ctypes.sizeof(cls),
                 "struct %s size: header %d, bindings %d" % (sname, size, ctypes.sizeof(cls)))
        ck.check(align == ctypes.alignment(cls),
                 "struct %s alignment: header %d, bindings %d" % (sname, align, ctypes.alignment(cls)))
        for fpath, off, fsize in fields.get(sname, []):
            c, total, ok = cls, 0, True
            for comp in fpath.split("."):
                desc, ftype = ctypes_field(c, FIELD_NAME_MAP.get(comp, comp))
                if desc is None:
                    ok = ck.check(False, "field %s.%s: no member %r in bindings' %s" % (
                        sname, fpath, FIELD_NAME_MAP.get(comp, comp), c.__name__))
                    break
                total += desc.offset
                last, c = desc, ftype
            if not ok:
                continue
            ck.check(off == total, "field %s.%s offset: header %d, bindings %d" % (sname, fpath, off, total))
            ck.check(fsize == last.size, "field %s.%s size: header %d, bindings %d" % (sname, fpath, fsize, last.size))
    for sname, want in DESIGN_SIZES.items():
        got = structs.get(sname, (None,))[0]
        ck.check(got == want, "struct %s: DESIGN.md says %d bytes, header gives %s" % (sname, want, got))
        cls = getattr(b, sname, None)
        ck.check(cls is not None and ctypes.sizeof(cls) == want,
                 "struct %s: DESIGN.md says %d bytes, bindings give %s" % (
                     sname, want, ctypes.sizeof(cls) if cls else None))
    # Members, their order and their types, from the parsed header.
    for sname, (kind, cfields) in sorted(hdr.structs.items()):
        cls = getattr(b, sname, None)
        if cls is None:
            continue
        named = [(f, t) for f, t in cfields if f not in PADDING_FIELDS]
        laid_out = {p for p, _, _ in fields.get(sname, []) if "." not in p}
        ck.check(laid_out == {f for f, _ in named},
                 "abi_layout.c prints members %s of %s, the header declares %s" % (
                     sorted(laid_out), sname, sorted(f for f, _ in named)))
        check_members(ck, sname, kind, named, cls)


def check_members(ck, sname, kind, named, cls):
    want_union = issubclass(cls, ctypes.Union)
    ck.check(want_union == (kind == "union"),
             "%s: %s in header, %s in bindings" % (sname, kind, "union" if want_union else "struct"))
    ct_names = [f for f, _ in cls._fields_]
    mapped = [FIELD_NAME_MAP.get(f, f) for f, _ in named]
    if kind == "struct":
        # A struct must declare every member, in order; a union may name a subset.
        ck.check(mapped == ct_names, "%s members: header %s, bindings %s" % (sname, mapped, ct_names))
    for fname, ftype in named:
        _, ct = ctypes_field(cls, FIELD_NAME_MAP.get(fname, fname))
        if ct is None:
            ck.check(False, "%s.%s: no such member in bindings" % (sname, fname))
            continue
        if ftype[0] == "anon":
            if ck.check(isinstance(ct, type) and issubclass(ct, ctypes.Structure),
                        "%s.%s: nested struct in header, %r in bindings" % (sname, fname, ct)):
                check_members(ck, "%s.%s" % (sname, fname), "struct", list(ftype[1]), ct)
            continue
        p = canon_ctypes(ct)
        why = mismatch(ftype, p)
        if why and FIELD_TYPE_EQUIVALENT.get((sname, fname)) == (ftype, p):
            why = None
        ck.check(why is None, "%s.%s type: %s" % (sname, fname, why))


def check_declarations(ck, hdr, b):
    for name in hdr.order:
        _, ret, params = hdr.functions[name]
        fn = getattr(b, "_" + name, None)
        if not ck.check(fn is not None and hasattr(fn, "argtypes"), "%s: not in bindings" % name):
            continue
        argtypes = fn.argtypes or []
        if not ck.check(len(params) == len(argtypes), "%s: %d argument(s) in header, %d in bindings" % (
                name, len(params), len(argtypes))):
            continue
        why = mismatch(ret, canon_ctypes(fn.restype))
        ck.check(why is None, "%s return: %s" % (name, why))
        for i, (c, p) in enumerate(zip(params, argtypes)):
            why = mismatch(c, canon_ctypes(p))
            ck.check(why is None, "%s arg %d: %s" % (name, i + 1, why))
    # Every typedef the bindings also define must agree: scalar aliases (wasm_valkind_t...),
    # struct aliases (wasm_name_t...), opaque handles and callback typedefs.
    for name, t in sorted(hdr.typedefs.items()):
        ct = getattr(b, name, None)
        if t[0] == "fn" and not ck.check(ct is not None, "typedef %s: callback not in bindings" % name):
            continue
        if ct is None:
            continue
        why = mismatch(t, canon_ctypes(ct))
        ck.check(why is None, "typedef %s: %s" % (name, why))


def exported_symbols(lib):
    out = subprocess.run(["nm", "-D", "--defined-only", lib], check=True, capture_output=True, text=True).stdout
    syms = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in "TWi":
            syms.add(parts[2].split("@")[0])
    return syms


def check_exports(ck, hdr, syms):
    for name in hdr.order:
        ck.check(name in syms, "%s: not exported by libwasmtime.so" % name)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_provenance(ck, header_text, bindings_lib):
    ck.check(os.path.exists(LIB) and sha256(LIB) == sha256(bindings_lib),
             "%s is not the library the bindings describe (%s)" % (LIB, bindings_lib))
    wheel_version = None
    for entry in os.listdir(WHEEL_DIR):
        m = re.match(r"wasmtime-([\w.]+)\.dist-info$", entry)
        if m:
            wheel_version = m.group(1)
    m = re.search(r"\(Wasmtime ([\w.]+)\)", header_text)
    ck.check(m is not None and m.group(1) == wheel_version,
             "header states Wasmtime %s, wheel is %s" % (m.group(1) if m else "no version", wheel_version))


def run_checks(header_text, layout_lines, b, syms, verbose=True):
    ck = Checker(verbose)
    try:
        hdr = Header(header_text)
    except ParseError as e:
        ck.check(False, "cannot parse header: %s" % e)
        return ck
    if layout_lines is None:
        ck.check(False, "abi_layout could not be built against the header")
    else:
        check_layout(ck, hdr, layout_lines, b)
    check_declarations(ck, hdr, b)
    check_exports(ck, hdr, syms)
    ck.check(len(hdr.order) > 0 and len(hdr.structs) > 0, "header declares no functions or structs")
    return ck


# Each mutant: (description, regex, replacement, a substring the failure report must contain).
MUTANTS = [
    ("drop an argument",
     r"(wasmtime_config_memory_init_cow_set\(wasm_config_t \*config), bool enable\)", r"\1)",
     "wasmtime_config_memory_init_cow_set: 1 argument(s) in header, 2 in bindings"),
    ("uint64_t -> uint32_t in a parameter",
     r"(wasmtime_context_set_fuel\(wasmtime_context_t \*context, )uint64_t", r"\1uint32_t",
     "wasmtime_context_set_fuel arg 2: uint32_t vs uint64_t"),
    ("swap two struct members",
     r"(typedef struct wasmtime_func \{\s*)uint64_t store_id;(\s*)void \*private_;",
     r"\1void *private_;\2uint64_t store_id;",
     "field wasmtime_func_t.store_id offset: header 8, bindings 0"),
    ("drop a callback parameter",
     r"(wasmtime_memory_get_callback_t\)\(void \*env, size_t \*byte_size), size_t \*byte_capacity\)", r"\1)",
     "typedef wasmtime_memory_get_callback_t: callback takes 2 argument(s) in header, 3 in bindings"),
    ("shrink a union",
     r"(double f64;\s*uint8_t v128\[16\];\s*)uint8_t pad\[24\];", r"\1",
     "struct wasmtime_valunion_t size: header 16, bindings 24"),
    ("widen a scalar typedef",
     r"typedef uint8_t wasm_valkind_t;", "typedef uint32_t wasm_valkind_t;",
     "wasm_valtype_new arg 1: uint32_t vs uint8_t"),
    ("misspell a function",
     r"void wasmtime_error_delete\(", "void wasmtime_error_free(",
     "wasmtime_error_free: not exported by libwasmtime.so"),
    ("pointer level of an out-parameter",
     r"(wasmtime_module_t) \*\*ret\)", r"\1 *ret)",
     "wasmtime_module_new arg 4"),
]


def self_test(header_text, b, syms, workdir):
    """Every mutant must be rejected with the expected message; returns (checks, failures)."""
    checks, failed = 0, []
    for i, (what, pattern, repl, expect) in enumerate(MUTANTS):
        checks += 1
        mutant, count = re.subn(pattern, repl, header_text)
        if count != 1:
            failed.append("self-test %r: pattern matched %d times in the header (update the mutant)" % (what, count))
            continue
        layout, err = layout_for_header(mutant, os.path.join(workdir, "m%d" % i))
        if layout is None:
            failed.append("self-test %r: mutant does not compile, so it proves nothing: %s" % (what, err))
            continue
        ck = run_checks(mutant, layout, b, syms, verbose=False)
        if not ck.failures:
            failed.append("self-test %r: mutated header was ACCEPTED" % what)
        elif not any(expect in f for f in ck.failures):
            failed.append("self-test %r: rejected, but not with %r; got %s" % (what, expect, ck.failures))
        else:
            print("self-test %-40s rejected (%d of %d checks failed)" % (what, len(ck.failures), ck.checks))
    for f in failed:
        print("FAIL: " + f)
    return checks, failed


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--header", help="check this header instead of src/runtime/wt.h (no self-test)")
    args = ap.parse_args()

    b, bindings_lib = load_bindings()
    syms = exported_symbols(LIB)
    header_path = args.header or HEADER
    with open(header_path) as f:
        header_text = f.read()

    with tempfile.TemporaryDirectory(prefix="shoal-abi-") as work:
        layout, err = layout_for_header(header_text, os.path.join(work, "main"))
        if layout is None:
            print("FAIL: abi_layout.c does not compile against %s:\n%s" % (header_path, err))
        built = os.path.join(BUILD_DIR, "abi_layout") if BUILD_DIR else ""
        stale = None
        if not args.header and built and os.path.exists(built):
            # The CMake-built tool is the one compiled with the project's flags; a fresh compile of
            # the same source must agree with it, otherwise the build is stale.
            built_layout = layout_from_binary(built)
            if built_layout != layout:
                stale = "%s disagrees with abi_layout.c compiled now (stale build? rebuild first)" % built
            layout = built_layout
        ck = run_checks(header_text, layout, b, syms)
        if built and not args.header:
            ck.check(stale is None, stale)
        check_provenance(ck, header_text, bindings_lib)
        hdr_info = ""
        try:
            h = Header(header_text)
            hdr_info = " (%d functions, %d structs, %d typedefs)" % (len(h.functions), len(h.structs), len(h.typedefs))
        except ParseError:
            pass
        print("%s%s: %d checks, %d failed" % (header_path, hdr_info, ck.checks, len(ck.failures)))
        checks, failures = ck.checks, len(ck.failures)
        if not args.header:
            n, failed = self_test(header_text, b, syms, work)
            print("self-test: %d mutants, %d not rejected as expected" % (n, len(failed)))
            checks += n
            failures += len(failed)
    print("%d checks, %d failed" % (checks, failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
