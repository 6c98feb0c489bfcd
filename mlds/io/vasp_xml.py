"""VASP vasprun.xml reader (streaming with ``xml.etree.ElementTree.XMLPullParser``).

The file is fed in 64 KiB chunks; every top-level element is removed from the
tree once handled and the bulky parts of a ``<calculation>`` (eigenvalues, DOS,
projections) are cleared when they end, so memory stays bounded by one ionic
step.  One :class:`Frame` per ``<calculation>``; same choices as the OUTCAR
reader (formats.md §3.2):

* ``energy`` = ``calculation/energy/e_fr_energy`` minus PSTRESS·V (VASP adds the
  PV term there, unlike OUTCAR's TOTEN); ``energy_sigma0`` = energy +
  (e_0 − e_fr) of the last ``<scstep>`` (``calculation/energy/e_0_energy`` is wrong
  in some VASP versions: 0.0 in vasprun.h2o.md.10.xml).
* positions are fractional in the file and converted to Cartesian Å.
* stress: 3x3 in kB, pressure-like sign → σ in eV/Å³ with the ASE sign.
* SCF non-convergence: number of ``<scstep>`` ≥ NELM (parameters, "electronic"
  separator) → dropped as ``scf-unconverged`` unless ``keep_unconverged=True``.
* a ``<calculation>`` without ``<scstep>`` in an MLFF run (ML_LMLFF) is an
  ML-predicted step: dropped as ``ml-predicted``; without forces: ``no-forces``.
* element symbols: ``atominfo/array[@name=atomtypes]`` element column, replaced by
  the symbol from the pseudopotential column when the 2-character element field
  is a placeholder (``X`` for Xe, ``r``...).
* a truncated file (killed job) yields the complete ``<calculation>`` blocks and
  a ``report.warn``; malformed XML before the end raises ``FormatError(line=N)``.
"""

from __future__ import annotations

import math
import re
from itertools import chain, repeat
from operator import itemgetter
import xml.etree.ElementTree as ET
from xml.parsers import expat
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from mlds.elements import atomic_numbers

from mlds.errors import FormatError
from mlds.format.frame import Frame, FrameBatch, blank_fields
from mlds.io import _vasp_common as vc
from mlds.io.registry import Reader, register_reader

_CHUNK = 1 << 19
_BLOCK_MAX = 1 << 22  # larger <calculation> blocks (DOS, projections...) are streamed event by event
_OPEN, _CLOSE = b"<calculation>", b"</calculation>"
# elements that _end handles when they appear anywhere (not only outside <calculation>)
_BLOCK_UNSAFE = (b"<incar", b"<atominfo", b"<kpoints")
# in a tail after the plain rest of a block (_plain_tail): a <scstep>, a nested <calculation> or a
# _BLOCK_UNSAFE tag (one pass over the DOS instead of one per tag).  Written as '<', one of their first
# letters, then the rest of the name that letter starts (lookbehind): the DOS's many '<r>' and '</'
# are then rejected by one class test each instead of five alternatives (half the search time).
_TAIL_NAMES = (b"scstep", b"calculation>") + tuple(t[1:] for t in _BLOCK_UNSAFE)
_TAIL_UNSAFE = re.compile(rb"<[" + bytes(sorted({n[0] for n in _TAIL_NAMES})) + rb"](?:"
                          + rb"|".join(rb"(?<=" + n[:1] + rb")" + n[1:] for n in _TAIL_NAMES) + rb")")
_SC_NEXT = re.compile(rb"[ \t\r\n]*<scstep>")
_SC_OPEN_ANY, _SC_OPEN, _SC_CLOSE = b"<scstep", b"<scstep>", b"</scstep>"
# VASP's usual <scstep> body: <time> elements, then one <energy> of <i name="..."> elements.  Only
# printable ASCII without '<', '&', ']' (plus space, tab, newline) in texts and names: such a match
# is well-formed XML with no entities, CDATA or line-end/attribute normalisation, so its names and
# texts are exactly what ElementTree would give.  Anything else is parsed by ElementTree.
# Possessive quantifiers (*+): every repeated piece ends before a character that cannot start it
# again ('<' or '"'), so backtracking could never find another match; they only save the work.
_TXT = rb"[\t\n\x20-\x25\x27-\x3b\x3d-\x5c\x5e-\x7e]*+"
_NAME = rb"[\x20\x21\x23-\x25\x27-\x3b\x3d-\x7e]*+"
_W = rb"[ \t\r\n]*+"
# VASP's usual plain <scstep>: <time> elements, then one <energy> whose <i> elements hold an
# e_fr_energy and, after it, an e_0_energy, both plain numbers (so float() cannot fail on them; the
# first of each name in the <energy> is the one matched: no <i> of those names before it)
_NUM = rb"[ \t\r\n]*+-?[0-9]++\.[0-9]*+(?:[eE][-+]?[0-9]++)?+[ \t\r\n]*+"
_I_ANY = _W + rb'<i name="' + _NAME + rb'">' + _TXT + rb"</i>"
_I_OTHER = _W + rb'<i name="(?!e_fr_energy"|e_0_energy")' + _NAME + rb'">' + _TXT + rb"</i>"


def _sc_one(num_efr: bytes, num_e0: bytes) -> bytes:
    return (_W + rb"<scstep>" + _W + rb'(?:<time name="' + _NAME + rb'">' + _TXT + rb"</time>" + _W + rb")*+<energy>"
            + rb"(?:" + _I_OTHER + rb")*+" + _W + rb'<i name="e_fr_energy">' + num_efr + rb"</i>"
            + rb"(?:" + _I_OTHER + rb")*+" + _W + rb'<i name="e_0_energy">' + num_e0 + rb"</i>"
            + rb"(?:" + _I_ANY + rb")*+" + _W + rb"</energy>" + _W + rb"</scstep>")


_SC_ONE = _sc_one(_NUM, _NUM)
# all leading plain <scstep> elements in one match
_SCSTEPS = re.compile(rb"(?:" + _SC_ONE + rb")*+")
_EFR_TAG, _E0_TAG, _I_END = b'<i name="e_fr_energy">', b'<i name="e_0_energy">', b"</i>"
_ROWS = rb"((?:" + _W + rb"<v>" + _TXT + rb"</v>)*+)" + _W


def _va(name: bytes) -> bytes:
    return rb'<varray name="' + name + rb'" ?>' + _ROWS + rb"</varray>" + _W


# VASP's usual rest of an MD/relaxation <calculation> after its <scstep>s (structure, forces,
# optional stress, energy, timings), same strict texts as _SCSTEPS; when it stops before the end of
# the block, what follows (DOS, eigenvalues... of the last step) may be a tail nothing reads
# (_plain_tail); anything else: ElementTree
_REST_BODY = (
    _W + rb"<structure>" + _W + rb"<crystal>" + _W + _va(rb"basis")
    + rb'<i name="volume">' + _TXT + rb"</i>" + _W + _va(rb"rec_basis") + rb"</crystal>" + _W
    + _va(rb"positions") + rb"</structure>" + _W + _va(rb"forces") + rb"(?:" + _va(rb"stress") + rb")?+"
    + rb"<energy>((?:" + _W + rb'<i name="' + _NAME + rb'">' + _TXT + rb"</i>)*+)" + _W + rb"</energy>" + _W
    + rb'(?:<time name="' + _NAME + rb'">' + _TXT + rb"</time>" + _W + rb")*+")
_REST_PLAIN = re.compile(_REST_BODY + rb"(?:</calculation>)?+")
# a whole usual block in one match (_plain_run): whitespace, <calculation>, plain <scstep>s, the plain
# rest.  Groups 1-2: the e_fr_energy and e_0_energy texts of the last <scstep> (a group in a repeat
# keeps its last match); 3-8: the rest's groups 1-6 of _REST_PLAIN; 9: the end tag, absent when a
# tail follows
_BLOCK_PLAIN = re.compile(_W + rb"<calculation>(?:" + _sc_one(b"(" + _NUM + b")", b"(" + _NUM + b")") + rb")*+"
                          + _REST_BODY + rb"(</calculation>)?+")
_V_TEXT = re.compile(r"<v>([^<]*)</v>")
_V_BYTES = re.compile(rb"<v>([^<]*)</v>")
# first <i> of that name in the (already strictly matched) <energy> body
_I_EFR = re.compile(rb'<i name="e_fr_energy">([^<]*)</i>')
_XML_ENCODING = re.compile(rb"\s*<\?xml[^>]*?encoding=[\"']([A-Za-z0-9._-]+)[\"']")
_HEAVY = frozenset({"eigenvalues", "projected", "dos", "eigenvalues_kpoints_opt", "projected_kpoints_opt",
                    "dielectricfunction", "partial"})
# the bulky ones that _xml_calc cuts out of a <calculation> before building its tree
_CUT_NAMES = (b"eigenvalues", b"dos", b"projected")
_TAG_NAME_END = (b">", b" ", b"\t", b"\r", b"\n")
_CUT_MIN = 1 << 13  # smaller blocks: ElementTree directly
_BATCH = 128  # plain <calculation> blocks finished together (_flush_batch)
_EXTRA_KEYS = ("ISMEAR", "NELM", "IBRION", "ISIF", "EDIFF", "IVDW", "ISPIN", "NWRITE", "PSTRESS", "EDIFFG",
               "NSW", "POTIM", "ML_LMLFF", "ML_MODE", "LASPH")


@register_reader
class VaspXmlReader(Reader):
    name = "vasp-xml"
    extensions = ("xml",)
    description = "VASP vasprun.xml (all ionic steps; streamed)"
    hashes_while_reading = True  # every byte goes through _read (SHA-256 in the same pass)

    @classmethod
    def sniff(cls, path: Path, head: bytes) -> bool:
        h = head[:8192]
        return b"<modeling>" in h and (b'name="program"' in h or b"<generator>" in h or b"<incar>" in h)

    # ------------------------------------------------------------------ reading
    def _frames(self) -> Iterator[Frame]:
        for item in self._items():
            if type(item) is FrameBatch:
                yield from item
            else:
                yield item

    def _items(self) -> Iterator[Frame | FrameBatch]:
        self.report.code = "VASP"
        self._keep_unconverged = bool(self.options.get("keep_unconverged", False))
        self._version: str | None = None
        self._incar: dict[str, str] = {}
        self._params: dict[str, str] = {}
        self._nelm: int | None = None
        self._types: list[tuple[int, str, str]] = []  # (count, symbol, pseudopotential)
        self._atom_types: list[int] | None = None
        self._numbers: np.ndarray | None = None
        self._kpoints: dict[str, Any] | None = None
        self._step = 0
        self._sc_count = 0
        self._sc_last: tuple[float, float] | None = None  # (e_fr, e_0) of the last scstep
        self._settings_done = False
        self._pstress_raw: Any = None
        self._pstress = vc.to_num(None)

        parser = ET.XMLPullParser(events=("start", "end"))
        stack: list[ET.Element] = []
        self._block_encoding: str | None = None
        # Fast path: a complete top-level <calculation> block (found by a byte search) is parsed on
        # its own by the C parser in one call instead of event by event, and the streaming parser
        # never sees it (nor the whitespace between such blocks): a well-formed element at depth 1
        # changes nothing in its state.  Its positions then lag behind the file's, so a parse error
        # is located again by _located (error path only; counting lines here cost ~7 % of a read).
        # Anything unusual (parse error, nested or header-like elements, a block larger than
        # _BLOCK_MAX, a truncated file) goes through the streaming parser exactly as before.
        self._skipped = False
        batch: list = []  # plain blocks not finished yet (_flush_batch)

        def feed(data: bytes, flush: bool = False) -> Iterator[Frame]:
            if batch:  # what the streaming parser may yield or raise comes after the blocks before it
                yield from self._flush_batch(batch)
            yield from self._feed(parser, stack, data, flush)

        with open(self.path, "rb") as fh:
            buf = self._read(fh, _CHUNK)
            m = _XML_ENCODING.match(buf)
            if m:
                self._block_encoding = m.group(1).decode("ascii")
            eof = not buf
            pos = 0
            while True:
                i = buf.find(_OPEN, pos)
                if i < 0:
                    if eof:
                        yield from feed(buf[pos:])
                        break
                    cut = max(pos, len(buf) - (len(_OPEN) - 1))  # keep a possibly split "<calculation>"
                    yield from feed(buf[pos:cut])
                    more = self._read(fh, _CHUNK)
                    eof = not more
                    buf, pos = buf[cut:] + more, 0
                    continue
                if i > pos:
                    gap = buf[pos:i]
                    if gap.translate(None, b" \t\r\n"):
                        yield from feed(gap)
                    else:  # whitespace between blocks: cannot change the parser state
                        self._skipped = True
                    pos = i
                if len(stack) != 1 and hasattr(parser, "flush"):
                    # expat (>= 2.6, Python >= 3.11.9 / 3.12.3) may hold back the end of what it was
                    # fed, e.g. the end tags of the header: parse it so that the stack is up to date
                    # and the first <calculation> can take the fast path too
                    yield from feed(b"", flush=True)
                if len(stack) != 1:  # not directly under the root element: stream it
                    yield from feed(buf[pos:pos + len(_OPEN)])
                    pos += len(_OPEN)
                    continue
                end = yield from self._plain_run(buf, pos, batch)
                if end != pos:  # usual blocks taken; the next one (if any) from the top of the loop
                    pos = end
                    if pos > _CHUNK:
                        buf, pos = buf[pos:], 0
                    continue
                j = buf.find(_CLOSE, pos)
                while j < 0 and not eof and len(buf) - pos < _BLOCK_MAX:
                    more = self._read(fh, _CHUNK)
                    eof = not more
                    buf, pos = buf[pos:] + more, 0
                    j = buf.find(_CLOSE)
                if j < 0:  # larger than _BLOCK_MAX or the file ends inside it: stream it
                    yield from feed(buf[pos:pos + len(_OPEN)])
                    pos += len(_OPEN)
                    continue
                end = j + len(_CLOSE)
                calc = self._parse_block(buf, pos, end)
                if calc is None:
                    yield from feed(buf[pos:end])
                else:
                    self._skipped = True
                    if type(calc[3]) is tuple:  # plain rest (_REST_PLAIN groups)
                        batch.append(calc)
                        if len(batch) >= _BATCH:
                            yield from self._flush_batch(batch)
                    else:
                        if batch:
                            yield from self._flush_batch(batch)
                        frame = self._block_calculation(calc)
                        if frame is not None:
                            yield frame
                pos = end
                if pos > _CHUNK:
                    buf, pos = buf[pos:], 0
        if batch:
            yield from self._flush_batch(batch)
        truncated = False
        try:
            parser.close()
        except ET.ParseError:
            truncated = True
        if not self._settings_done:
            self._fill_settings()
        if truncated:
            self.report.warn(
                f"{self.path}: XML ends early (truncated file: job killed?); kept the {self._step} complete "
                f"<calculation> step(s) before the break")
        if self._step == 0:
            self.report.warn(f"{self.path}: no complete ionic step (<calculation>) in the file; 0 frames")
            self.report.set_empty_reason(
                "XML is truncated before the first complete <calculation> (job killed or still running?)"
                if truncated else "no <calculation> (ionic step) in the file")
        elif truncated and self.report.kept == 0:
            self.report.set_empty_reason(f"{self.report.default_empty_reason()}; the XML is truncated after "
                                         f"<calculation> {self._step}")

    def _feed(self, parser: ET.XMLPullParser, stack: list[ET.Element], data: bytes,
              flush: bool = False) -> Iterator[Frame]:
        """Stream ``data`` through the pull parser, handling its events (the general path).
        ``flush``: also make expat parse what it may have held back (reparse deferral)."""
        if not data and not flush:
            return
        parser.feed(data)
        late: ET.ParseError | None = None
        if flush:
            try:
                parser.flush()
            except ET.ParseError as err:  # raised after the events before it, as feed() would
                late = err
        try:
            for event, elem in parser.read_events():
                if event == "start":
                    stack.append(elem)
                else:
                    stack.pop()
                    frame = self._end(elem, stack)
                    if frame is not None:
                        yield frame
            if late is not None:
                raise late
        except ET.ParseError as err:
            if self._skipped:
                err = self._located(err)
            raise FormatError(self.path, f"malformed XML: {err.msg if hasattr(err, 'msg') else err}",
                              line=err.position[0]) from None

    def _located(self, err: ET.ParseError) -> ET.ParseError:
        """The error the streaming parser would have raised had it been fed every byte of the file.

        It was not fed the blocks parsed on their own: well-formed elements at depth 1 in context
        (else they are streamed), so the first error is the same one, only its line and column were
        counted without them.  A parser with no tree (memory stays bounded) reads the file again up
        to the error; ``err`` itself if it finds none (cannot happen for an unchanged file)."""
        parser = ET.XMLParser(target=_NoTree())
        try:
            with open(self.path, "rb") as fh:
                for chunk in iter(lambda: fh.read(_CHUNK), b""):
                    parser.feed(chunk)
            if hasattr(parser, "flush"):
                parser.flush()
        except ET.ParseError as real:
            return real
        return err

    def _plain_run(self, buf: bytes, pos: int, batch: list) -> Iterator[Frame]:
        """Take the usual blocks that follow one another from ``pos`` (a top-level <calculation>):
        each one a single _BLOCK_PLAIN match, what _parse_block's first path finds for it with a
        dozen calls more; its tail (DOS...) checked by _plain_tail as there.  Returns where the
        first block it did not take starts (``pos`` if none): that one, complete in ``buf`` or
        not, takes the general path.  A generator for the frames of full batches."""
        match = _BLOCK_PLAIN.match
        while True:
            m = match(buf, pos)
            if m is None:
                return pos
            rest_end = end = m.end()
            g = m.groups()
            if g[8] is None:  # the rest stops before </calculation>: a tail follows
                j = buf.find(_CLOSE, end)
                if j < 0:
                    return pos
                end = j + len(_CLOSE)
                if not self._plain_tail(buf, rest_end, end, g[6] is not None):
                    return pos
            n_plain = buf.count(_SC_OPEN, m.start(), rest_end)
            # e_fr_energy and e_0_energy of the last <scstep>, as _parse_block takes them
            last_plain = g[:2] if n_plain else None
            self._skipped = True
            batch.append((n_plain, last_plain, (), g[2:8]))
            if len(batch) >= _BATCH:
                yield from self._flush_batch(batch)
            pos = end

    def _parse_block(self, buf: bytes, start: int, stop: int) -> tuple | None:
        """One ``<calculation>...</calculation>`` (``buf[start:stop]``) parsed on its own, or None when the streaming
        parser must see it (malformed, or holding elements that ``_end`` reacts to outside
        ``<calculation>``: then only the streaming path gives the same result).

        Returns ``(n_plain, last_plain, steps, calc)``: the leading ``<scstep>`` children with
        VASP's usual plain layout (``_SCSTEPS``) are only counted (``n_plain``), and the
        e_fr_energy / e_0_energy texts of the last of them kept (``last_plain``): nothing else of
        them matters and their numbers cannot be corrupt.  That saves building ~15 elements per
        SCF step.  ``steps`` are any other leading <scstep> elements (ElementTree), ``calc`` the
        ``_REST_PLAIN`` groups of the rest when it is plain, else its element tree (ElementTree
        checks it, so a malformed block still goes to the streaming parser).
        """
        # the usual all-plain block is matched in place (regex endpos: as on the slice, without a copy)
        p = start + len(_OPEN)
        end = _SCSTEPS.match(buf, p, stop).end()
        n_plain, last_plain = 0, None
        if end > p:
            n_plain = buf.count(_SC_OPEN, p, end)
            i = buf.find(_EFR_TAG, buf.rfind(_SC_OPEN, p, end)) + len(_EFR_TAG)
            j = buf.find(_E0_TAG, i) + len(_E0_TAG)
            last_plain = (buf[i:buf.find(_I_END, i)], buf[j:buf.find(_I_END, j)])
            p = end
        m = _REST_PLAIN.match(buf, p, stop)
        if m and (m.end() == stop or self._plain_tail(buf, m.end(), stop, m.group(5) is not None)):
            # all plain: no nested <calculation>, no _BLOCK_UNSAFE tag (texts cannot hold a '<')
            return n_plain, last_plain, (), m.groups()
        block = buf[start:stop]
        p -= start
        plain_end = p
        if block.find(_OPEN, 1) >= 0 or any(t in block for t in _BLOCK_UNSAFE):
            return None
        # ... then any other leading <scstep> by ElementTree
        steps: list = []
        try:
            while True:
                m = _SC_NEXT.match(block, p)
                if not m:
                    break
                end = block.find(_SC_CLOSE, m.end())
                region = block[m.end():end]
                if end < 0 or _SC_OPEN_ANY in region:
                    break
                steps.append(self._xml(_SC_OPEN + region + _SC_CLOSE))
                p = end + len(_SC_CLOSE)
        except ET.ParseError:
            return None
        if p != plain_end:  # (_REST_PLAIN did not match at plain_end)
            m = _REST_PLAIN.match(block, p)
            if m and m.end() == len(block):
                return n_plain, last_plain, steps, m.groups()
        try:
            calc = self._xml_calc(_OPEN + block[p:])
        except (ET.ParseError, expat.ExpatError):
            return None
        return n_plain, last_plain, steps, calc

    def _plain_tail(self, buf: bytes, t: int, stop: int, has_stress: bool) -> bool:
        """True when ``buf[t:stop]``, what follows the plain rest of a block (DOS, eigenvalues,
        projections: VASP writes them
        in the last <calculation>) is well-formed XML that changes nothing the element-tree path
        would read: no <scstep>, no second stress array when the plain part had none, no element
        that _end reacts to, and no comment, CDATA, processing instruction or DTD (checked by expat,
        exactly as ElementTree would parse it; a malformed tail goes to the streaming parser)."""
        # searched in place: no copies of the DOS
        if (_TAIL_UNSAFE.search(buf, t, stop) is not None
                or (not has_stress and buf.find(b'"stress"', t, stop) >= 0)):
            return False
        unusual = []
        check = expat.ParserCreate(self._block_encoding, "}")  # as ET.XMLParser creates it
        check.CommentHandler = check.StartCdataSectionHandler = check.StartDoctypeDeclHandler = \
            check.ProcessingInstructionHandler = lambda *a: unusual.append(1)
        try:
            check.Parse(_OPEN, False)
            check.Parse(memoryview(buf)[t:stop], True)
        except expat.ExpatError:
            return False
        return not unusual

    def _xml_calc(self, data: bytes) -> ET.Element:
        """``self._xml(data)`` for a <calculation>, without building the trees of its bulky parts.

        The eigenvalues, DOS and projections are never looked at, and building their elements is
        most of the cost of parsing a block that holds them.  So expat first checks the whole block
        exactly as ElementTree would (same encoding and namespace processing; a malformed block
        raises) and reports any comment, CDATA section, processing instruction or DTD; without
        those every ``<`` in the block starts or ends a tag, and ElementTree parses the block with
        those elements cut out whole: the tree differs only by elements nothing reads.
        """
        if len(data) < _CUT_MIN:
            return self._xml(data)
        cuts = []
        for name in _CUT_NAMES:
            start_tag, close = b"<" + name, b"</" + name + b">"
            i = data.find(start_tag)
            while i >= 0:
                j = i + len(start_tag)
                nxt = data.find(start_tag, j)
                # a start tag of this very name (not a longer one, not self-closing) whose end tag is
                # the first one after it and comes before the next namesake start tag (no nesting)
                if data[j:j + 1] in _TAG_NAME_END:
                    end = data.find(close, j)
                    if end >= 0 and (nxt < 0 or end < nxt):
                        cuts.append((i, end + len(close)))
                i = nxt
        if not cuts:
            return self._xml(data)
        unusual = []
        check = expat.ParserCreate(self._block_encoding, "}")  # as ET.XMLParser creates it
        check.CommentHandler = check.StartCdataSectionHandler = check.StartDoctypeDeclHandler = \
            check.ProcessingInstructionHandler = lambda *a: unusual.append(1)
        check.Parse(data, True)
        if unusual:
            return self._xml(data)
        pieces = []
        last = 0
        for start, end in sorted(cuts):
            if start >= last:  # not inside an element already cut
                pieces.append(data[last:start])
                last = end
        pieces.append(data[last:])
        return self._xml(b"".join(pieces))

    def _xml(self, data: bytes) -> ET.Element:
        parser = ET.XMLParser(encoding=self._block_encoding)
        parser.feed(data)
        return parser.close()

    def _block_calculation(self, parsed: tuple, pre: tuple | None = None) -> Frame | None:
        """What the end events of a streamed <calculation> do, for a block parsed in one go
        (``pre``: its arrays already converted by ``_batch_arrays``)."""
        n_plain, last_plain, steps, calc = parsed
        if n_plain:
            self._sc_count += n_plain
            self._sc_last = (float(last_plain[0]), float(last_plain[1]))  # _NUM: plain numbers
        for st in steps:
            self._scstep(st)
        if isinstance(calc, ET.Element):
            for ch in calc:
                if ch.tag == "scstep":
                    self._scstep(ch)
        if not self._settings_done:
            self._fill_settings()
        out = self._calculation(calc) if isinstance(calc, ET.Element) else self._plain_calculation(calc, pre)
        self._sc_count, self._sc_last = 0, None
        return out

    def _plain_calculation(self, rest: tuple, pre: tuple | None = None) -> Frame | None:
        """_calculation for a block whose rest matched _REST_PLAIN (its groups; plain ASCII texts)."""
        step = self._calc_start()
        if step is None:
            return None
        efr = _I_EFR.search(rest[5])  # the <energy> body
        efr = _MISSING if efr is None else (efr.group(1).decode("ascii") or None)
        if pre is not None:  # (cell, positions, forces, stress, finite) from _batch_arrays
            return self._calc_frame(step, *pre, efr)
        basis, _rec, positions, forces, stress, _energy = rest
        n = len(self._numbers)
        arrays = _plain_arrays((basis, positions, forces, stress), (3, n, n, 3))
        if arrays is not None:  # every row exactly 3 numbers: nothing to report
            return self._calc_arrays(step, *arrays, efr)
        dec = lambda g: None if g is None else _V_TEXT.findall(g.decode("ascii"))  # noqa: E731
        return self._calc_values(step, dec(basis), dec(positions), dec(forces), dec(stress), efr)

    # Plain blocks are collected and their arrays converted together (one float() pass, one batched
    # matrix product, ...): with small cells (6 atoms: 9 kB per block) the per-block numpy and
    # parsing overhead is most of the work.  The blocks are then finished one by one, in order,
    # exactly as one at a time (drops, warnings, errors and step numbers in the same order).
    def _flush_batch(self, batch: list) -> Iterator[Frame]:
        pre = self._batch_arrays(batch) if len(batch) > 1 else None
        if pre is None:
            for parsed in batch:
                frame = self._block_calculation(parsed)
                if frame is not None:
                    yield frame
        else:
            yield from self._finish_batch(batch, *pre)
        batch.clear()

    def _finish_batch(self, batch: list, cells, positions, forces, stresses, finite) -> Iterator[Frame]:
        """``_block_calculation`` of each block with its arrays from ``_batch_arrays``, in order.
        The usual block (plain <scstep>s only, settings known, e_fr_energy a number, no PV term,
        converged or kept, finite) is done here inline, exactly as _block_calculation ->
        _plain_calculation -> _calc_start -> _calc_frame do it: with small cells the calls
        themselves were a good part of the per-frame work.  Anything else takes those calls."""
        inline = self._pv_pressure() is None  # no event changes PSTRESS within a batch
        nelm, keep = self._nelm, self._keep_unconverged
        numbers = self._numbers
        efr_search = _I_EFR.search
        # The frames are collected: when every block took the inline path they go out as one
        # FrameBatch with the arrays they were cut from (convert hashes those in one go), else one
        # by one; an error comes after the frames made before it, as when each was yielded at once.
        made: list = []
        energies: list = []
        try:
            for parsed, cell, pos, frc, st, fin in zip(batch, cells, positions, forces, stresses, finite.tolist()):
                n_plain, last_plain, steps, rest = parsed
                if steps or not n_plain or not self._settings_done:
                    frame = self._block_calculation(parsed, (cell, pos, frc, st, fin))
                    energies = None
                    if frame is not None:
                        made.append(frame)
                    continue
                sc = self._sc_count + n_plain
                self._sc_count = sc
                self._sc_last = last = (float(last_plain[0]), float(last_plain[1]))  # _NUM: plain numbers
                step = self._step  # _calc_start: species resolved (_batch_arrays), some SCF step
                self._step = step + 1
                efr = efr_search(rest[5])  # the <energy> body
                efr = _MISSING if efr is None else (efr.group(1).decode("ascii") or None)
                energy = None
                if inline and efr is not _MISSING and efr is not None and fin and (nelm is None or sc < nelm or keep):
                    try:
                        energy = float(efr)
                    except ValueError:
                        pass  # _calc_frame names it
                if energy is not None and math.isfinite(energy):
                    fields = blank_fields()
                    fields.update(numbers=numbers, positions=pos, cell=cell, pbc=_PBC.copy(), energy=energy,
                                  forces=frc, stress=st, energy_sigma0=energy + (last[1] - last[0]),
                                  converged=nelm is None or sc < nelm, info={"step": step, "scf_iterations": sc})
                    frame = Frame._adopt(fields)
                    if energies is not None:
                        energies.append(energy)
                else:
                    frame = self._calc_frame(step, cell, pos, frc, st, fin, efr)
                    energies = None
                self._sc_count, self._sc_last = 0, None
                if frame is not None:
                    made.append(frame)
        except Exception:
            yield from made
            raise
        if energies is not None and len(made) == len(batch) and type(forces) is np.ndarray:
            yield FrameBatch(made, numbers, positions, cells, energies, forces,
                             stresses if type(stresses) is np.ndarray else None)
        else:
            yield from made

    def _batch_arrays(self, batch: list) -> tuple | None:
        """Per block (cell, Cartesian positions, forces, stress or None, finite) of plain blocks that
        all have the same arrays, every row exactly 3 numbers; None otherwise (one at a time then)."""
        if self._numbers is None:
            try:
                self._resolve_species()
            except FormatError:
                return None  # raised again, in order, by the block that needs the species
        n = len(self._numbers)
        # _REST_PLAIN groups: basis, rec_basis, positions, forces, stress, energy
        rests = [parsed[3] for parsed in batch]
        has_stress = rests[0][4] is not None
        if has_stress:
            if any(r[4] is None for r in rests):
                return None
            groups = list(chain.from_iterable(map(itemgetter(0, 2, 3, 4), rests)))
            rows = (3, n, n, 3)
        else:
            if any(r[4] is not None for r in rests):
                return None
            groups = list(chain.from_iterable(map(itemgetter(0, 2, 3), rests)))
            rows = (3, n, n)
        arrays = _plain_arrays(groups, rows * len(batch), joined=True)
        if arrays is None:
            return None
        per = sum(rows)
        v = arrays.reshape(len(batch), per, 3)
        cell, frac, forces = v[:, :3], v[:, 3:3 + n], v[:, 3 + n:3 + 2 * n]
        positions = np.matmul(frac, cell)  # bit-identical to frac[k] @ cell[k] one by one
        finite = np.isfinite(positions).all(axis=(1, 2)) & np.isfinite(forces).all(axis=(1, 2))
        if has_stress:
            kb = v[:, 3 + 2 * n:]
            stress = -(0.5 * (kb + kb.transpose(0, 2, 1))) * vc.KB_TO_EV_A3  # as kb33_to_stress, per block
            finite &= np.isfinite(stress).all(axis=(1, 2))
        else:
            stress = [None] * len(batch)
        return cell, positions, forces, stress, finite

    def _scstep(self, elem: ET.Element) -> None:
        self._sc_count += 1
        en = elem.find("energy")
        if en is not None:
            efr = e0 = None
            for i in en:
                if i.tag != "i":
                    continue
                name = i.get("name")
                if name == "e_fr_energy" and efr is None:
                    efr = i
                elif name == "e_0_energy" and e0 is None:
                    e0 = i
            if efr is not None and e0 is not None:
                self._sc_last = (self._float(efr.text, "scstep e_fr_energy"),
                                 self._float(e0.text, "scstep e_0_energy"))

    # ------------------------------------------------------------------ events
    def _end(self, elem: ET.Element, stack: list[ET.Element]) -> Frame | None:
        tag = elem.tag
        depth = len(stack)  # number of ancestors
        parent = stack[-1].tag if stack else None
        out = None
        if depth == 2 and parent == "generator" and tag == "i" and elem.get("name") == "version":
            m = re.search(r"\d+\.\d+(?:\.\d+)?", elem.text or "")
            self._version = m.group(0) if m else (elem.text or "").strip()
        elif parent == "incar" and tag in ("i", "v"):
            self._incar.setdefault(elem.get("name", ""), (elem.text or "").strip())
        elif tag in ("i", "v") and depth >= 2 and stack[1].tag == "parameters":
            name = elem.get("name", "")
            if name == "NELM":
                # NELM also appears for response functions; the SCF one is under "electronic ..."
                seps = [e.get("name", "") for e in stack if e.tag == "separator"]
                if seps and seps[0] == "electronic" and self._nelm is None:
                    self._nelm = self._int(elem.text, "NELM")
            self._params.setdefault(name, (elem.text or "").strip())
        elif tag == "array" and parent == "atominfo":
            if elem.get("name") == "atomtypes":
                self._read_atomtypes(elem)
            elif elem.get("name") == "atoms":
                self._atom_types = [self._int(rc[1].text, "atomtype") for rc in elem.iter("rc")]
        elif tag == "generation" and parent == "kpoints":
            div = elem.find("v[@name='divisions']")
            if div is not None:
                shift = elem.find("v[@name='usershift']")
                mesh = [int(x) for x in (div.text or "").split()]
                user = [float(x) for x in shift.text.split()] if shift is not None else None
                self._kpoints = {"mesh": mesh, "shift": vc.kpoint_shift(elem.get("param", ""), mesh, user)}
        elif tag == "varray" and parent == "kpoints" and elem.get("name") == "kpointlist" and self._kpoints is None:
            self._kpoints = {"n_kpoints": len(elem)}
        elif tag == "scstep" and parent == "calculation":
            self._scstep(elem)
            elem.clear()
        elif tag in _HEAVY and parent == "calculation":
            elem.clear()
        elif tag == "calculation" and depth == 1:
            if not self._settings_done:
                self._fill_settings()
            out = self._calculation(elem)
            self._sc_count, self._sc_last = 0, None
        if depth == 1:
            stack[0].remove(elem)  # handled: drop it from the tree (bounded memory)
        return out

    def _read_atomtypes(self, arr: ET.Element) -> None:
        fields = [f.text.strip() if f.text else "" for f in arr.findall("field")]
        try:
            i_cnt, i_el, i_pp = fields.index("atomspertype"), fields.index("element"), fields.index("pseudopotential")
        except ValueError:
            i_cnt, i_el, i_pp = 0, 1, 4
        for rc in arr.iter("rc"):
            cols = [(c.text or "").strip() for c in rc.findall("c")]
            self._types.append((self._int(cols[i_cnt], "atomspertype"), cols[i_el], " ".join(cols[i_pp].split())))

    def _resolve_species(self) -> None:
        if self._numbers is not None:
            return
        if not self._types:
            raise FormatError(self.path, "no <atominfo> atomtypes array before the first <calculation>")
        symbols = []
        for count, el, pp in self._types:
            from_pp = vc.element_from_potcar(pp)
            if vc.is_valid_symbol(el) and (from_pp is None or from_pp == el):
                symbols.append(el)
            elif from_pp is not None:
                if vc.is_valid_symbol(el):
                    self.report.warn(f"{self.path}: atomtypes element {el!r} disagrees with pseudopotential "
                                     f"{pp!r}; using {from_pp!r}")
                symbols.append(from_pp)
            else:
                raise FormatError(self.path, f"cannot tell the element of atom type {el!r} ({pp!r})",
                                  line=self._find_line(pp or el))
        zs = [atomic_numbers[s] for s in symbols]
        if self._atom_types is not None:
            if any(t < 1 or t > len(zs) for t in self._atom_types):
                raise FormatError(self.path, "atominfo atom type index out of range", line=self._find_line("<atominfo>"))
            counts = [self._atom_types.count(i + 1) for i in range(len(zs))]
            if counts != [c for c, _, _ in self._types]:
                raise FormatError(self.path, f"atominfo disagrees with itself: atoms per type {counts} vs "
                                  f"atomspertype {[c for c, _, _ in self._types]}", line=self._find_line("atomspertype"))
            self._numbers = np.array([zs[t - 1] for t in self._atom_types], dtype=np.uint8)
        else:
            self._numbers = np.repeat(zs, [c for c, _, _ in self._types]).astype(np.uint8)
        self._symbols = symbols

    # ------------------------------------------------------------------ one step
    def _calc_start(self) -> int | None:
        """Common start of one <calculation>: its step index, or None when it has no SCF steps."""
        self._resolve_species()
        step = self._step
        self._step += 1
        if self._sc_count == 0:
            ml_run = bool(vc.to_bool(self._params.get("ML_LMLFF") or self._incar.get("ML_LMLFF")))
            self.report.drop("ml-predicted" if ml_run else "no-scf")
            return None
        return step

    def _calculation(self, c: ET.Element) -> Frame | None:
        step = self._calc_start()
        if step is None:
            return None
        struct = c.find("structure")
        forces_el = _named(c, "varray", "forces")
        if struct is None or forces_el is None:
            self.report.drop("no-forces")
            return None
        # struct.find("crystal/varray[@name='basis']"): the first match over all <crystal> children
        basis = next((v for cr in struct if cr.tag == "crystal" for v in [_named(cr, "varray", "basis")]
                      if v is not None), None)
        en = c.find("energy")
        efr_el = _named(en, "i", "e_fr_energy") if en is not None else None
        return self._calc_values(step, _texts(basis), _texts(_named(struct, "varray", "positions")),
                                 _texts(forces_el), _texts(_named(c, "varray", "stress")),
                                 _MISSING if efr_el is None else efr_el.text)

    def _calc_values(self, step: int, basis, positions, forces_t, stress_t, efr) -> Frame | None:
        """The rest of a <calculation> from the <v> texts of its arrays (None: array absent) and
        the e_fr_energy text (``_MISSING``: absent)."""
        n = len(self._numbers)
        cell = self._rows(basis, 3, "basis")
        frac = self._rows(positions, n, "positions")
        forces = self._rows(forces_t, n, "forces")
        kb = None if stress_t is None else self._rows(stress_t, 3, "stress")
        return self._calc_arrays(step, cell, frac, forces, kb, efr)

    def _calc_arrays(self, step: int, cell, frac, forces, kb, efr) -> Frame | None:
        """The rest of a <calculation> from its arrays (kb: 3x3 stress in kB or None) and the
        e_fr_energy text (``_MISSING``: absent)."""
        stress = None
        if kb is not None:
            # VASP writes the 3x3 stress slightly asymmetric (~1e-3 kB, numerical noise; observed in
            # vasprun.h2o.md.tribox.xml).  A physical Cauchy stress is symmetric, so we store the
            # symmetric part (s + s.T)/2 (ASE keeps the upper triangle, dpdata the raw matrix).
            kb = 0.5 * (kb + kb.T)
            stress = vc.kb33_to_stress(kb)
        positions = frac @ cell
        # all (n, 3) or (3, 3): one finiteness check over the rows of all three
        finite = bool(np.isfinite(np.concatenate((positions, forces) if stress is None
                                                 else (positions, forces, stress))).all())
        return self._calc_frame(step, cell, positions, forces, stress, finite, efr)

    def _pv_pressure(self) -> float | None:
        """PSTRESS (kB) when it adds a PV term to e_fr_energy (a nonzero number), else None."""
        raw = self._params.get("PSTRESS") or self._incar.get("PSTRESS")
        if raw != self._pstress_raw:  # converted once, not per step
            self._pstress_raw, self._pstress = raw, vc.to_num(raw)
        p = self._pstress
        return p if isinstance(p, (int, float)) and not isinstance(p, bool) and p else None

    def _calc_frame(self, step: int, cell, positions, forces, stress, finite, efr) -> Frame | None:
        """The frame of a <calculation> from its converted arrays (``finite``: no NaN/Inf in
        positions, forces, stress) and the e_fr_energy text (``_MISSING``: absent)."""
        rep = self.report
        if efr is _MISSING:
            rep.drop("no-energy")
            return None
        energy = self._float(efr, "e_fr_energy")
        # calculation/energy/e_fr_energy includes +PSTRESS*V (an enthalpy); TOTEN in OUTCAR does not.
        pstress = self._pv_pressure()
        if pstress is not None:
            energy -= pstress * vc.KB_TO_EV_A3 * abs(np.linalg.det(cell))
        sigma0 = float("nan")
        if self._sc_last is not None:
            sigma0 = energy + (self._sc_last[1] - self._sc_last[0])
        converged = not (self._nelm is not None and self._sc_count >= self._nelm)
        if not converged and not self._keep_unconverged:
            rep.drop("scf-unconverged")
            return None
        if not (math.isfinite(energy) and finite):
            rep.drop("non-finite")
            rep.warn(f"{self.path}: step {step} has NaN/Inf energy, positions, forces or stress; dropped")
            return None
        # arrays already float64 of the right shapes: what Frame.__post_init__ would make of them
        return Frame._trusted(numbers=self._numbers, positions=positions, cell=cell, pbc=_PBC.copy(),
                              energy=float(energy), forces=forces, stress=stress, energy_sigma0=float(sigma0),
                              converged=converged, info={"step": step, "scf_iterations": self._sc_count})

    # ------------------------------------------------------------------ helpers
    def _varray(self, el: ET.Element | None, rows: int, what: str) -> np.ndarray:
        return self._rows(_texts(el), rows, what)

    def _rows(self, texts: list | None, rows: int, what: str) -> np.ndarray:
        """An (rows, 3) array from the texts of a varray's <v> elements (None: no such array)."""
        if texts is None:
            raise FormatError(self.path, f"<calculation> {self._step - 1} has no {what} array")
        if len(texts) != rows:
            raise FormatError(self.path, f"{what} array has {len(texts)} rows, expected {rows}",
                              line=self._find_line(f'name="{what}"'))
        # fast path: every row exactly 3 numbers (float() itself, so the same strings are accepted)
        toks = [(t or "").split() for t in texts]
        if all(len(t) == 3 for t in toks):
            try:
                return np.array(list(map(float, chain.from_iterable(toks)))).reshape(rows, 3)
            except ValueError:
                pass  # the careful loop below names the bad number and its line
        out = np.empty((rows, 3))
        for i, text in enumerate(texts):
            toks = (text or "").split()
            try:
                vals = [float(t) for t in toks]
            except ValueError:
                bad = next(t for t in toks if not vc._is_float(t))
                raise FormatError(self.path, f"corrupt number {bad!r} in {what}", line=self._find_line(bad)) from None
            if len(vals) != 3:
                raise FormatError(self.path, f"{what} row has {len(vals)} numbers, expected 3",
                                  line=self._find_line((text or "").strip() or what))
            out[i] = vals
        return out

    def _float(self, text: str | None, what: str) -> float:
        try:
            return float(text)
        except (TypeError, ValueError):
            tok = (text or "").strip()
            raise FormatError(self.path, f"corrupt number {tok!r} in {what}", line=self._find_line(tok or what)) from None

    def _int(self, text: str | None, what: str) -> int:
        try:
            return int((text or "").strip())
        except ValueError:
            tok = (text or "").strip()
            raise FormatError(self.path, f"corrupt integer {tok!r} in {what}", line=self._find_line(tok or what)) from None

    def _find_line(self, token: str) -> int | None:
        """Line number of the first occurrence of ``token`` (error path only: rescans the file)."""
        if not token:
            return None
        needle = token.encode("latin-1", "replace")
        with open(self.path, "rb") as fh:
            for i, line in enumerate(fh, 1):
                if needle in line:
                    return i
        return None

    # ------------------------------------------------------------------ settings
    def _fill_settings(self) -> None:
        self._settings_done = True
        # parameters = every value VASP used; incar = what the user set, so it wins where present
        p = dict(self._params)
        p.update(self._incar)
        num = {k: vc.to_num(v) for k, v in p.items()}
        st: dict[str, Any] = {"code": "VASP"}
        if self._version:
            st["code_version"] = self._version
        pps = [pp for _, _, pp in self._types]
        metagga = p.get("METAGGA")
        func = vc.functional(p.get("GGA"), metagga, vc.to_bool(p.get("LHFCALC")), _f(num.get("HFSCREEN")),
                             _f(num.get("AEXX")), pps)
        func = vc.with_vdw(func, num.get("IVDW"))
        if func:
            st["functional"] = func
        encut = _f(num.get("ENMAX")) or _f(num.get("ENCUT"))
        if encut is not None:
            st["plane_wave_cutoff_eV"] = encut
        if self._kpoints:
            st["kpoints"] = self._kpoints
        ismear = num.get("ISMEAR")
        sm = vc.smearing(ismear if isinstance(ismear, int) and not isinstance(ismear, bool) else None,
                         _f(num.get("SIGMA")))
        if sm:
            st["smearing"] = sm
        if isinstance(num.get("ISPIN"), int):
            st["spin_polarized"] = num["ISPIN"] == 2
        if self._types:
            try:
                self._resolve_species()
                st["pseudopotentials"] = [{"element": s, "name": pp} for s, pp in zip(self._symbols, pps)]
            except FormatError:
                pass
        if self._nelm is not None:
            num["NELM"] = self._nelm
        extra = {k: num[k] for k in _EXTRA_KEYS if k in num}
        if extra.get("EDIFF") == 0:
            # vasprun prints reals with 8 decimals: EDIFF=1e-10 becomes "0.00000000"; unknown, not 0
            del extra["EDIFF"]
        if extra:
            st["extra"] = extra
        self.report.settings = st


_MISSING = object()
_PBC = np.ones(3, dtype=bool)


def atom_types(path: str | Path) -> list[tuple[int, str]]:
    """(atoms, element) per species from the ``<atominfo>`` of a vasprun.xml (read up to there only),
    with the same element fix-ups as the reader; FormatError when there is none."""
    reader = VaspXmlReader(path)
    reader._types, reader._atom_types, reader._numbers = [], None, None
    try:
        for _, elem in ET.iterparse(str(path), events=("end",)):
            if elem.tag == "array" and elem.get("name") == "atomtypes":
                reader._read_atomtypes(elem)
                break
            if elem.tag in ("atominfo", "calculation"):
                break
    except ET.ParseError as err:
        raise FormatError(path, f"malformed XML before <atominfo>: {err}") from None
    reader._resolve_species()  # FormatError when no atomtypes were found
    return [(count, sym) for (count, _, _), sym in zip(reader._types, reader._symbols)]


def _texts(el: ET.Element | None) -> list | None:
    """The texts of the <v> children of a varray (None when there is no varray)."""
    return None if el is None else [v.text for v in el.findall("v")]


def _named(parent: ET.Element, tag: str, name: str) -> ET.Element | None:
    """``parent.find(f"{tag}[@name='{name}']")`` without ElementPath's per-call overhead."""
    for ch in parent:
        if ch.tag == tag and ch.get("name") == name:
            return ch
    return None


def _plain_arrays(groups, rows, joined: bool = False) -> Any:
    """The (rows, 3) float arrays of the ``<v>`` rows in the _REST_PLAIN groups (None: no such
    array), parsed in one go, when every group has the expected number of rows and every row is
    exactly 3 numbers; else None (the careful per-row path then names the problem).
    ``joined``: all groups present, and one flat array of all their numbers is returned."""
    if joined:  # many small groups (_batch_arrays): the checks in C
        if None in groups or list(map(bytes.count, groups, repeat(b"<v>"))) != list(rows):
            return None
        total = sum(rows)
        joined_rows = b"".join(groups)
        # VASP's fixed-format rows (every <v> text as wide as the first, 3 numbers): column-wise
        texts = _V_BYTES.findall(joined_rows)
        if len(texts) == total:
            vals = vc.fixed_rows(b"\n".join(texts) + b"\n", total, 3)
            if vals is not None:
                return vals.reshape(-1)
        return _token_floats(joined_rows, total)
    parts = []
    total = 0
    for g, r in zip(groups, rows):
        if g is None:
            continue
        if g.count(b"<v>") != r:
            return None
        parts.append(g)
        total += r
    vals = _token_floats(b"".join(parts), total)
    if vals is None:
        return None
    out: list = []
    pos = 0
    for g, r in zip(groups, rows):
        if g is None:
            out.append(None)
        else:
            out.append(vals[pos:pos + 3 * r].reshape(r, 3))
            pos += 3 * r
    return out


def _token_floats(joined_rows: bytes, total: int) -> np.ndarray | None:
    """The 3 * total numbers of ``total`` <v> rows (_plain_arrays), or None unless every row is
    exactly 3 numbers."""
    # each </v> becomes a "<" token ('<' cannot occur in a text): rows of 3 numbers are exactly
    # token lists whose every 4th token is "<"
    toks = joined_rows.decode("ascii").replace("<v>", " ").replace("</v>", " < ").split()
    if len(toks) != 4 * total or toks[3::4] != ["<"] * total:
        return None
    del toks[3::4]
    try:
        return np.fromiter(map(float, toks), dtype=np.float64, count=3 * total)
    except ValueError:
        return None


class _NoTree:
    """An ElementTree parser target that keeps nothing (_located: errors only)."""


def _f(v) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None
