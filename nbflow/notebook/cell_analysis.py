"""Which names a `%%task` cell reads from earlier cells and which it binds, found from its source.

The cache key of a task run folds in the values of the cell's *inputs*, and the run publishes its
*outputs* back to the notebook, so a missed input is a stale cache hit: every rule below leans
towards reporting a name as an input when in doubt (the caller intersects `inputs` with the names
that exist in the user namespace, so over-reporting costs nothing).

Rules, one per line (tests/notebook/test_cell_analysis.py has table-driven cases for each):

R1  Inputs are names read before the cell surely binds them: `a = 1; b = a` has none, `b = a; a = 1` has a.
R2  Builtins, IPython's `get_ipython`/`display`, `__name__`/`__file__`/`__builtins__` are never inputs.
R3  `x = x + 1` and `x += 1` make x an input and an output; `x: int = 1` is an output; `x: int` binds nothing.
R4  A binding on some paths only (if, loop, try, match, and/or, `with suppress`) leaves later reads as inputs.
R5  Names read in function and lambda bodies are inputs unless bound at top level anywhere in the cell.
R6  `def` and `class` bind their name; decorators, defaults, annotations and bases are read when defined.
R7  Parameters, comprehension and lambda variables are local; class-body names are not visible in methods.
R8  `global y` with `y = ...` in a function makes y an output (an input too if read); `nonlocal` stays inside.
R9  A walrus (`:=`) binds in the nearest non-comprehension scope: at top level it is an output.
R10 `import a.b.c` binds a, `import a.b as c` binds c, `from m import x as y` binds y; `import *` is opaque.
R11 `del x` at top level reads x and puts it in `deleted` and in `outputs`.
R12 `for`, `with ... as`, `match` captures, starred and tuple targets bind; `except E as e` does not.
R13 Assigning or deleting through `obj.attr`/`obj[k]`, or `x += ...` on an input, puts the root in `mutated`.
R14 `globals()`, `exec`/`eval` without a namespace, `setattr(sys.modules[...])`, `user_ns`, `%run` are opaque.
R15 `%magic`, `!cmd`, `name?` and `?name` lines become `pass`; `x = !cmd` and `x = %magic ...` bind x.
R16 `$name`, `{expr}` and the code after `%time`/`%timeit`/`%prun` are reads (best effort; `%time` binds too).
R17 A cell that is not Python once its IPython lines are set aside raises `CellSyntaxError` naming the line.
R18 String annotations (forward references) are not parsed; f-string fields are read like any expression.
R19 `free_callables` are the inputs the cell calls: `f(...)` -> f, `mod.f(...)` -> mod, `@dec` -> dec.

Limits, on purpose: a function body may run before a later top-level binding (R5 trusts the binding);
`with` bodies are taken to complete unless the manager is `suppress(...)`; `mutated` sees neither aliases
(`b = a; b.x = 1`) nor mutating calls (`a.append(1)`), nor writes from function bodies; shadowed builtins
(`len = ...` in an earlier cell) are not inputs; `%time` binds because IPython runs it in the user namespace,
`%timeit` and `%prun` code is read only. Opaque cells still report what they bind statically.
"""

from __future__ import annotations

import ast
import builtins
import functools
import re
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import ClassVar

from nbflow.errors import NbflowError

__all__ = ["CellNames", "CellSyntaxError", "analyze", "free_callables"]


@dataclass(frozen=True)
class CellNames:
    """The names a cell reads from earlier cells and binds for later ones."""

    #: Names the cell reads that must come from earlier cells (over-reported rather than missed).
    inputs: frozenset[str]
    #: Names the cell binds at top level, including the ones it deletes.
    outputs: frozenset[str]
    #: Names the cell `del`s at top level (a subset of `outputs`).
    deleted: frozenset[str]
    #: True when the outputs cannot be known statically; `reason` then says why.
    opaque: bool
    #: Why the cell is opaque, in words for the user (None when it is not).
    reason: str | None
    #: Inputs the cell changes in place through an attribute, a subscript or augmented assignment.
    mutated: frozenset[str] = frozenset()


class CellSyntaxError(NbflowError, SyntaxError):
    """The cell is not valid Python, even after setting its IPython lines aside."""


#: Never inputs: builtins, what IPython adds to them, and the module attributes of the kernel.
_NEVER_INPUTS = frozenset(dir(builtins)) | {
    "__file__", "__builtins__", "__annotations__", "__cached__", "__IPYTHON__", "get_ipython", "display",
}

_MODULE, _CLASS, _FUNCTION, _COMPREHENSION = "module", "class", "function", "comprehension"

#: The call that stands in for an IPython line while the cell is parsed; its argument indexes the line.
_IPYTHON_CALL = "__nbflow_ipython_line__"
#: Magics that run Python code given on their line.
_CODE_MAGICS = frozenset({"time", "timeit", "prun"})
#: Magics that change the notebook's namespace in ways the cell's text does not show.
_OPAQUE_MAGICS = {
    "run": "`%run` binds the names of the script it runs",
    "reset": "`%reset` deletes names from the notebook",
    "reset_selective": "`%reset_selective` deletes names from the notebook",
}
#: Matches a cell that may hold IPython syntax; any other cell is parsed as it is.
_MAYBE_IPYTHON = re.compile(r"^[ \t]*[%!?]|\?[ \t]*$|=[ \t]*[%!]", re.MULTILINE)
_HELP_LINE = re.compile(r"\?{1,2}(\S.*)?|[\w.\[\]()'\"*%]+\?{1,2}")
_ASSIGN_FROM_IPYTHON = re.compile(r"^(\s*)([^=!%?#]*[^=!%?#\s<>])\s*=\s*([%!].*)$")
_DOLLAR_NAME = re.compile(r"(?<![$\w])\$([A-Za-z_]\w*)")
_BRACED_EXPR = re.compile(r"\{([^{}]+)\}")
_NEWLINE = re.compile(r"\r\n?|\n")


def analyze(source: str) -> CellNames:
    """Find the names the cell body `source` (without its `%%task` line) reads and binds."""
    return _analyze(source)[0]


def free_callables(source: str) -> frozenset[str]:
    """The inputs of the cell that it calls (`f(...)` -> f, `mod.f(...)` -> mod, `@dec` -> dec)."""
    return _analyze(source)[1]


@functools.lru_cache(maxsize=256)
def _analyze(source: str) -> tuple[CellNames, frozenset[str]]:
    tree, ipython_lines = _parse(source)
    visitor = _CellVisitor(ipython_lines)
    for statement in tree.body:
        visitor.visit(statement)
    return visitor.result()


# --- parsing ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _IPythonLine:
    """An IPython line set aside before parsing: a `%magic` or a `!shell` command."""

    kind: str  #: "magic" or "shell"
    name: str  #: the magic's name ("" for shell commands)
    rest: str  #: the text after the magic name or the `!`
    lineno: int


def _parse(source: str) -> tuple[ast.Module, list[_IPythonLine]]:
    """Parse the cell, with a stand-in for each IPython line; return the tree and the lines set aside."""
    lines = _NEWLINE.split(source)
    if "\0" in source:
        lineno = next(number for number, line in enumerate(lines, 1) if "\0" in line)
        raise CellSyntaxError(
            f"Line {lineno} of the cell contains a NUL character (\\0), which Python source cannot hold. "
            "Remove it; it usually comes from pasting binary data.",
            ("<cell>", lineno, lines[lineno - 1].index("\0") + 1, lines[lineno - 1], None, None),
        )
    ipython_lines: list[_IPythonLine] = []
    if _MAYBE_IPYTHON.search(source) and _single_line_tokens(source, lines):
        # Set every IPython-looking line aside at once: here such a line cannot be the inside of a
        # string, and one inside brackets (`(a\n% b)`) no longer parses, which sends us line by line.
        translated = [
            _translate_ipython_line(line, number, ipython_lines) or line if _MAYBE_IPYTHON.search(line) else line
            for number, line in enumerate(lines, 1)
        ]
        try:
            return _parse_python("\n".join(translated), "<cell>"), ipython_lines
        except SyntaxError:
            ipython_lines.clear()
    # Line by line: set aside only the lines the parser stumbles on.
    replaced: set[int] = set()
    text = source
    while True:
        try:
            return _parse_python(text, "<cell>"), ipython_lines
        except SyntaxError as err:
            error = err
        lineno = error.lineno
        if lineno is None or not 1 <= lineno <= len(lines) or lineno in replaced:
            raise _cell_syntax_error(error, source, lines) from None
        translated = _translate_ipython_line(lines[lineno - 1], lineno, ipython_lines)
        if translated is None:
            raise _cell_syntax_error(error, source, lines) from None
        lines[lineno - 1] = translated
        replaced.add(lineno)
        text = "\n".join(lines)


def _parse_python(text: str, filename: str, mode: str = "exec") -> ast.AST:
    # Invalid escape sequences warn while parsing; the user sees that warning when the cell runs.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ast.parse(text, filename=filename, mode=mode)


def _single_line_tokens(source: str, lines: list[str]) -> bool:
    """Whether no string or statement of the cell can span lines (no triple quotes, no `\\` continuation)."""
    return "\"\"\"" not in source and "\'\'\'" not in source and not any(line.endswith("\\") for line in lines)


def _translate_ipython_line(line: str, lineno: int, found: list[_IPythonLine]) -> str | None:
    """Python standing in for an IPython line (None if the line is not IPython syntax)."""
    body = line.strip()
    indent = line[: len(line) - len(line.lstrip())]
    if not body:
        return None
    if body[0] in "%!":
        found.append(_ipython_line(body, lineno))
        return f"{indent}{_IPYTHON_CALL}({len(found) - 1})"
    match = _ASSIGN_FROM_IPYTHON.match(line)
    if match is not None:
        found.append(_ipython_line(match.group(3).strip(), lineno))
        return f"{indent}{match.group(2)} = {_IPYTHON_CALL}({len(found) - 1})"
    if _HELP_LINE.fullmatch(body):
        return f"{indent}pass"
    return None


def _ipython_line(escaped: str, lineno: int) -> _IPythonLine:
    if escaped.startswith("!"):
        return _IPythonLine("shell", "", escaped.lstrip("!").strip(), lineno)
    name, _, rest = escaped.lstrip("%").partition(" ")
    return _IPythonLine("magic", name, rest.strip(), lineno)


def _cell_syntax_error(error: SyntaxError, source: str, lines: list[str]) -> CellSyntaxError:
    lineno = error.lineno if error.lineno and 1 <= error.lineno <= len(lines) else None
    original = _NEWLINE.split(source)
    text = original[lineno - 1] if lineno else (error.text or "").rstrip("\n")
    where = f"line {lineno} of the cell" if lineno else "the cell"
    message = (
        f"{where} is not valid Python ({error.msg}):\n    {text.strip()}\n"
        "Fix that line. IPython syntax is understood only as a whole line: `%magic ...`, `!command`, "
        "`x = %magic ...`, `x = !command`, `name?`."
    )
    return CellSyntaxError(
        message[0].upper() + message[1:],
        ("<cell>", lineno, error.offset, text, error.end_lineno, error.end_offset),
    )


# --- the visitor --------------------------------------------------------------------------------


class _Scope:
    """A namespace of the cell: the module, a class body, a function or lambda, or a comprehension."""

    __slots__ = ("kind", "definite", "binds", "reads", "globals", "nonlocals")

    def __init__(self, kind: str) -> None:
        self.kind = kind
        #: Module and class bodies run now: the names bound for sure at the current statement.
        self.definite: set[str] = set()
        #: Function and comprehension scopes: every name bound anywhere in them (their locals).
        self.binds: set[str] = set()
        #: Function and comprehension scopes: names read, resolved when the scope closes.
        self.reads: set[str] = set()
        self.globals: set[str] = set()
        self.nonlocals: set[str] = set()


class _CellVisitor(ast.NodeVisitor):
    """Walks a cell in execution order, tracking scopes, and collects its reads and writes."""

    def __init__(self, ipython_lines: list[_IPythonLine]) -> None:
        self._ipython_lines = ipython_lines
        self._module = _Scope(_MODULE)
        self._scopes = [self._module]
        self._inputs: set[str] = set()
        #: Top-level names read from function bodies: inputs unless bound at top level anywhere.
        self._deferred_reads: set[str] = set()
        self._outputs: set[str] = set()
        #: Names bound by the cell's own top-level statements (not through `global` in a function).
        self._top_level_bound: set[str] = set()
        self._deleted: set[str] = set()
        self._mutated: set[str] = set()
        self._called: set[str] = set()
        self._opaque_reasons: list[str] = []
        #: Above zero inside the parts of an expression that may not run (`and`/`or`, `if ... else`).
        self._conditional = 0

    # A dispatch table and a lean generic_visit: the cell is re-analysed often, and this halves the walk.
    _handlers: ClassVar[dict[type, Callable[[_CellVisitor, ast.AST], None]]] = {}

    def visit(self, node: ast.AST) -> None:
        kind = type(node)
        handler = self._handlers.get(kind)
        if handler is None:
            handler = getattr(type(self), "visit_" + kind.__name__, type(self).generic_visit)
            self._handlers[kind] = handler
        handler(self, node)

    def generic_visit(self, node: ast.AST) -> None:
        for field in node._fields:
            value = getattr(node, field, None)
            if isinstance(value, list):
                for item in value:
                    if isinstance(item, ast.AST):
                        self.visit(item)
            elif isinstance(value, ast.AST) and not isinstance(value, ast.expr_context):
                self.visit(value)

    def visit_Constant(self, node: ast.Constant) -> None:
        pass

    def result(self) -> tuple[CellNames, frozenset[str]]:
        inputs = frozenset((self._inputs | (self._deferred_reads - self._top_level_bound)) - _NEVER_INPUTS)
        names = CellNames(
            inputs=inputs,
            outputs=frozenset(self._outputs),
            deleted=frozenset(self._deleted),
            opaque=bool(self._opaque_reasons),
            reason="; ".join(self._opaque_reasons) or None,
            mutated=frozenset(self._mutated & inputs),
        )
        return names, frozenset(self._called & inputs)

    # -- reads, bindings and scopes

    def _read(self, name: str) -> None:
        scope = self._scopes[-1]
        if scope.kind is _MODULE:
            if name not in scope.definite:
                self._inputs.add(name)
        elif scope.kind is _CLASS:
            if name in scope.definite:
                return
            if name in scope.globals:
                self._resolve_free(name, 1, deferred=False)
            else:
                self._resolve_free(name, len(self._scopes) - 1, deferred=False)
        else:
            scope.reads.add(name)

    def _resolve_free(self, name: str, below: int, *, deferred: bool) -> None:
        """Look `name` up in the scopes enclosing `self._scopes[below]`; class bodies are skipped."""
        for index in range(below - 1, -1, -1):
            scope = self._scopes[index]
            if scope.kind is _CLASS:
                continue
            if scope.kind is _MODULE:
                if deferred:
                    self._deferred_reads.add(name)
                elif name not in scope.definite:
                    self._inputs.add(name)
                return
            scope.reads.add(name)  # resolved when that function or comprehension closes
            return

    def _bind(self, name: str, *, skip_comprehensions: bool = False) -> None:
        index = len(self._scopes) - 1
        conditional = self._conditional > 0
        if skip_comprehensions:
            while self._scopes[index].kind is _COMPREHENSION:
                index -= 1
                conditional = True  # the comprehension may not iterate at all
        scope = self._scopes[index]
        if scope.kind is _MODULE:
            self._outputs.add(name)
            self._top_level_bound.add(name)
            if not conditional:
                scope.definite.add(name)
        elif name in scope.globals:
            self._outputs.add(name)
            if scope.kind is _CLASS:  # a class body runs now, a function body later
                self._top_level_bound.add(name)
        elif name not in scope.nonlocals:
            scope.binds.add(name)
            if not conditional:
                scope.definite.add(name)

    def _delete(self, name: str) -> None:
        scope = self._scopes[-1]
        if scope.kind is _MODULE or name in scope.globals:
            self._read(name)
            self._deleted.add(name)
            self._outputs.add(name)
            if scope.kind is _MODULE:
                self._top_level_bound.add(name)
                scope.definite.discard(name)
        elif scope.kind is _CLASS:
            self._read(name)
            scope.definite.discard(name)
        elif name not in scope.nonlocals:
            scope.binds.add(name)  # `del x` makes x local to the function

    def _push(self, kind: str) -> _Scope:
        scope = _Scope(kind)
        self._scopes.append(scope)
        return scope

    def _pop(self) -> None:
        scope = self._scopes.pop()
        below = len(self._scopes)
        if scope.kind is _FUNCTION:
            for name in scope.reads - scope.binds:
                if name in scope.globals:
                    self._deferred_reads.add(name)
                else:
                    self._resolve_free(name, below, deferred=True)
        elif scope.kind is _COMPREHENSION:
            for name in scope.reads - scope.binds:
                self._resolve_free(name, below, deferred=False)

    def _run_block(self, statements: Iterable[ast.stmt], start: set[str]) -> set[str]:
        """Visit a block that may or may not run, starting from `start`; return what it leaves bound."""
        scope = self._scopes[-1]
        scope.definite = set(start)
        for statement in statements:
            self.visit(statement)
        return scope.definite

    def _opaque(self, node: ast.AST, why: str) -> None:
        self._opaque_reasons.append(f"line {getattr(node, 'lineno', '?')}: {why}")

    # -- names

    def visit_Name(self, node: ast.Name) -> None:
        context = type(node.ctx)
        if context is ast.Load:
            self._read(node.id)
        elif context is ast.Store:
            self._bind(node.id)
        else:
            self._delete(node.id)

    def visit_Global(self, node: ast.Global) -> None:
        if self._scopes[-1].kind is not _MODULE:
            self._scopes[-1].globals.update(node.names)

    def visit_Nonlocal(self, node: ast.Nonlocal) -> None:
        self._scopes[-1].nonlocals.update(node.names)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._bind(alias.asname or alias.name.partition(".")[0])

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        for alias in node.names:
            if alias.name == "*":
                self._opaque(node, f"`from {node.module or '.'} import *` binds names known only at run time")
            else:
                self._bind(alias.asname or alias.name)

    # -- assignments

    def visit_Assign(self, node: ast.Assign) -> None:
        self.visit(node.value)
        for target in node.targets:
            self.visit(target)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        target = node.target
        if isinstance(target, ast.Name):
            self._note_mutation(target.id)
            self._read(target.id)
            self.visit(node.value)
            self._bind(target.id)
        else:
            self.visit(target)
            self.visit(node.value)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self.visit(node.value)
        if self._scopes[-1].kind in (_MODULE, _CLASS):  # annotations of locals are never evaluated
            self.visit(node.annotation)
        target = node.target
        if node.value is not None:
            self.visit(target)
        elif isinstance(target, ast.Name):
            if self._scopes[-1].kind is _FUNCTION:
                self._scopes[-1].binds.add(target.id)  # `x: int` makes x local to the function
        else:
            self.visit(target.value)  # evaluated, but nothing is assigned
            if isinstance(target, ast.Subscript):
                self.visit(target.slice)

    def visit_NamedExpr(self, node: ast.NamedExpr) -> None:
        self.visit(node.value)
        self._bind(node.target.id, skip_comprehensions=True)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if node.attr in ("user_ns", "user_global_ns"):
            self._opaque(node, f"`.{node.attr}` reads and writes the notebook's namespace directly")
        if type(node.ctx) is not ast.Load:
            self._note_target(node)
        self.visit(node.value)

    def visit_Subscript(self, node: ast.Subscript) -> None:
        if type(node.ctx) is not ast.Load:
            self._note_target(node)
        self.visit(node.value)
        self.visit(node.slice)

    def _note_target(self, node: ast.Attribute | ast.Subscript) -> None:
        """Record an assignment or `del` through an attribute or subscript."""
        root = _root_name(node, through_calls=False)  # `f().x = 1` changes what f returned, not f
        if root is not None:
            self._note_mutation(root)
        if isinstance(node, ast.Attribute) and _is_sys_modules_item(node.value):
            self._opaque(node, "assigning to an attribute of `sys.modules[...]` binds names at run time")

    def _note_mutation(self, name: str) -> None:
        scope = self._scopes[-1]
        if scope.kind is _MODULE and name not in scope.definite:
            self._mutated.add(name)

    # -- definitions

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> None:
        if not isinstance(node, ast.Lambda):
            for decorator in node.decorator_list:
                self._note_call(decorator)
                self.visit(decorator)
        arguments = node.args
        for default in (*arguments.defaults, *arguments.kw_defaults):
            if default is not None:
                self.visit(default)
        parameters = _parameters(arguments)
        if not isinstance(node, ast.Lambda):
            for parameter in parameters:
                if parameter.annotation is not None:
                    self.visit(parameter.annotation)
            if node.returns is not None:
                self.visit(node.returns)
            self._bind(node.name)
        scope = self._push(_FUNCTION)
        scope.binds.update(parameter.arg for parameter in parameters)
        if isinstance(node, ast.Lambda):
            self.visit(node.body)
        else:
            for statement in node.body:
                self.visit(statement)
        self._pop()

    visit_AsyncFunctionDef = visit_FunctionDef
    visit_Lambda = visit_FunctionDef

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for decorator in node.decorator_list:
            self._note_call(decorator)
            self.visit(decorator)
        for base in node.bases:
            self.visit(base)
        for keyword in node.keywords:
            self.visit(keyword.value)
        self._push(_CLASS)
        for statement in node.body:
            self.visit(statement)
        self._pop()
        self._bind(node.name)

    def _visit_comprehension(
        self, node: ast.ListComp | ast.SetComp | ast.GeneratorExp | ast.DictComp
    ) -> None:
        generators = node.generators
        self.visit(generators[0].iter)  # evaluated in the enclosing scope
        self._push(_COMPREHENSION)
        for position, generator in enumerate(generators):
            if position:
                self.visit(generator.iter)
            self.visit(generator.target)
            for condition in generator.ifs:
                self.visit(condition)
        if isinstance(node, ast.DictComp):
            self.visit(node.key)
            self.visit(node.value)
        else:
            self.visit(node.elt)
        self._pop()

    visit_ListComp = visit_SetComp = visit_GeneratorExp = visit_DictComp = _visit_comprehension

    # -- control flow

    def visit_If(self, node: ast.If) -> None:
        self.visit(node.test)
        start = set(self._scopes[-1].definite)
        taken = self._run_block(node.body, start)
        self._scopes[-1].definite = taken & self._run_block(node.orelse, start)

    def visit_For(self, node: ast.For | ast.AsyncFor) -> None:
        self.visit(node.iter)
        scope = self._scopes[-1]
        start = set(scope.definite)
        scope.definite = set(start)
        self.visit(node.target)
        for statement in node.body:
            self.visit(statement)
        looped = scope.definite
        scope.definite = start & looped & self._run_block(node.orelse, start & looped)

    visit_AsyncFor = visit_For

    def visit_While(self, node: ast.While) -> None:
        self.visit(node.test)
        start = set(self._scopes[-1].definite)
        looped = self._run_block(node.body, start)
        self._scopes[-1].definite = start & looped & self._run_block(node.orelse, start & looped)

    def visit_Try(self, node: ast.Try) -> None:
        scope = self._scopes[-1]
        start = set(scope.definite)
        completed = self._run_block(node.body, start)
        completed = self._run_block(node.orelse, completed)
        for handler in node.handlers:  # the exception may come before any binding in the body
            completed = completed & self._visit_handler(handler, start)
        if node.finalbody:
            entry = start & completed
            after = self._run_block(node.finalbody, entry)
            completed = (completed - (entry - after)) | (after - entry)
        scope.definite = completed

    visit_TryStar = visit_Try

    def _visit_handler(self, handler: ast.ExceptHandler, start: set[str]) -> set[str]:
        scope = self._scopes[-1]
        scope.definite = set(start)
        if handler.type is not None:
            self.visit(handler.type)
        name = handler.name
        if name is None:
            return self._run_block(handler.body, scope.definite)
        was_output, was_bound = name in self._outputs, name in self._top_level_bound
        self._bind(name)
        for statement in handler.body:
            self.visit(statement)
        scope.definite.discard(name)  # Python deletes the name when the handler ends
        if scope.kind is _MODULE:
            if not was_output:
                self._outputs.discard(name)
            if not was_bound:
                self._top_level_bound.discard(name)
        return scope.definite

    def visit_With(self, node: ast.With | ast.AsyncWith) -> None:
        for item in node.items:
            self.visit(item.context_expr)
            if item.optional_vars is not None:
                self.visit(item.optional_vars)
        if any(_is_suppress(item.context_expr) for item in node.items):
            start = set(self._scopes[-1].definite)
            self._scopes[-1].definite = start & self._run_block(node.body, start)
        else:
            for statement in node.body:
                self.visit(statement)

    visit_AsyncWith = visit_With

    def visit_Match(self, node: ast.Match) -> None:
        self.visit(node.subject)
        scope = self._scopes[-1]
        start = set(scope.definite)
        after = None if any(_is_catch_all(case) for case in node.cases) else set(start)
        for case in node.cases:
            scope.definite = set(start)
            self.visit(case.pattern)
            if case.guard is not None:
                self.visit(case.guard)
            for statement in case.body:
                self.visit(statement)
            after = scope.definite if after is None else after & scope.definite
        scope.definite = after if after is not None else start

    def visit_MatchAs(self, node: ast.MatchAs) -> None:
        if node.pattern is not None:
            self.visit(node.pattern)
        if node.name is not None:
            self._bind(node.name)

    def visit_MatchStar(self, node: ast.MatchStar) -> None:
        if node.name is not None:
            self._bind(node.name)

    def visit_MatchMapping(self, node: ast.MatchMapping) -> None:
        for key in node.keys:
            self.visit(key)
        for pattern in node.patterns:
            self.visit(pattern)
        if node.rest is not None:
            self._bind(node.rest)

    def visit_BoolOp(self, node: ast.BoolOp) -> None:
        self.visit(node.values[0])
        self._conditional += 1
        for value in node.values[1:]:
            self.visit(value)
        self._conditional -= 1

    def visit_IfExp(self, node: ast.IfExp) -> None:
        self.visit(node.test)
        self._conditional += 1
        self.visit(node.body)
        self.visit(node.orelse)
        self._conditional -= 1

    # -- calls

    def visit_Call(self, node: ast.Call) -> None:
        function = node.func
        if isinstance(function, ast.Name) and function.id == _IPYTHON_CALL:
            index = node.args[0].value if node.args and isinstance(node.args[0], ast.Constant) else None
            if isinstance(index, int) and 0 <= index < len(self._ipython_lines):
                self._visit_ipython_line(self._ipython_lines[index])
                return
        self._note_call(function)
        self._check_dynamic_namespace(node)
        self.generic_visit(node)

    def _note_call(self, function: ast.expr) -> None:
        root = _root_name(function)
        if root is not None:
            self._called.add(root)

    def _check_dynamic_namespace(self, node: ast.Call) -> None:
        function = node.func
        if isinstance(function, ast.Name):
            name = function.id
            if name == "globals":
                self._opaque(node, "`globals()` reads and writes names chosen at run time")
            elif name in ("locals", "vars") and not node.args and self._scopes[-1].kind is _MODULE:
                self._opaque(node, f"`{name}()` at top level is `globals()`: names are chosen at run time")
            elif name in ("exec", "eval") and len(node.args) < 2 and not any(
                keyword.arg == "globals" for keyword in node.keywords
            ):
                self._opaque(
                    node, f"`{name}(...)` without a namespace reads and writes names known only at run time"
                )
            elif name in ("setattr", "delattr") and node.args and _is_sys_modules_item(node.args[0]):
                self._opaque(node, f"`{name}(sys.modules[...], ...)` binds names at run time")
        elif (
            isinstance(function, ast.Attribute)
            and function.attr in ("push", "run_cell")
            and _root_name(function) == "get_ipython"
        ):
            self._opaque(node, f"`get_ipython().{function.attr}(...)` binds names at run time")

    def _visit_ipython_line(self, line: _IPythonLine) -> None:
        if line.kind == "magic" and line.name in _CODE_MAGICS:
            code = _parse_magic_code(line.rest)
            if code is not None:
                if line.name == "time":  # %time runs the code in the user namespace
                    for statement in code.body:
                        self.visit(statement)
                else:  # reads only: a comprehension-like scope keeps its bindings local
                    self._push(_COMPREHENSION)
                    for statement in code.body:
                        self.visit(statement)
                    self._pop()
                return
        if line.kind == "magic":
            why = _OPAQUE_MAGICS.get(line.name)
            if line.name == "store" and "-r" in line.rest.split():
                why = "`%store -r` restores names from IPython's store"
            if why is not None:
                self._opaque_reasons.append(f"line {line.lineno}: {why}")
        for name in _DOLLAR_NAME.findall(line.rest):
            self._read(name)
        for text in _BRACED_EXPR.findall(line.rest):
            try:
                expression = _parse_python(text.strip(), "<ipython-line>", mode="eval")
            except (SyntaxError, ValueError):
                continue
            self.visit(expression.body)


# --- helpers ------------------------------------------------------------------------------------


def _root_name(node: ast.expr, *, through_calls: bool = True) -> str | None:
    """The name at the root of `a.b[c].d(...)`: a (None if the root is not a name)."""
    while True:
        if isinstance(node, ast.Name):
            return node.id
        if isinstance(node, (ast.Attribute, ast.Subscript)):
            node = node.value
        elif through_calls and isinstance(node, ast.Call):
            node = node.func
        else:
            return None


def _is_sys_modules_item(node: ast.expr) -> bool:
    """Whether `node` is `sys.modules[...]`."""
    return (
        isinstance(node, ast.Subscript)
        and isinstance(node.value, ast.Attribute)
        and node.value.attr == "modules"
        and isinstance(node.value.value, ast.Name)
        and node.value.value.id == "sys"
    )


def _is_suppress(node: ast.expr) -> bool:
    """Whether a `with` item is `suppress(...)` / `contextlib.suppress(...)`, which swallows errors."""
    if not isinstance(node, ast.Call):
        return False
    function = node.func
    return (isinstance(function, ast.Name) and function.id == "suppress") or (
        isinstance(function, ast.Attribute) and function.attr == "suppress"
    )


def _is_catch_all(case: ast.match_case) -> bool:
    """Whether a `case` always matches (`case _:` or `case name:` without a guard)."""
    return isinstance(case.pattern, ast.MatchAs) and case.pattern.pattern is None and case.guard is None


def _parameters(arguments: ast.arguments) -> list[ast.arg]:
    parameters = [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]
    if arguments.vararg is not None:
        parameters.append(arguments.vararg)
    if arguments.kwarg is not None:
        parameters.append(arguments.kwarg)
    return parameters


def _parse_magic_code(rest: str) -> ast.Module | None:
    """The Python code after a magic's options (`%timeit -n 10 f(a)` -> `f(a)`), if it parses."""
    words = rest.split(" ")
    for start in range(len(words)):
        if words[start].startswith("-") or not words[start]:
            continue
        try:
            return _parse_python(" ".join(words[start:]), "<ipython-line>")
        except (SyntaxError, ValueError):
            continue
    return None
