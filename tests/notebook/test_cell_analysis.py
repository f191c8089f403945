"""Cell analysis, table-driven: each case is a cell body and the names it reads and binds.

Case ids start with the rule they check (R1..R19 in nbflow/notebook/cell_analysis.py's docstring).
"""

from __future__ import annotations

import ast
import sys
import textwrap
import time
from pathlib import Path

import pytest

from nbflow.errors import NbflowError
from nbflow.notebook import cell_analysis
from nbflow.notebook.cell_analysis import CellNames, CellSyntaxError, analyze, free_callables


def case(id: str, source: str, inputs: set[str] | frozenset[str], outputs: set[str] | frozenset[str]):
    return pytest.param(textwrap.dedent(source).strip("\n"), set(inputs), set(outputs), id=id)


NONE: set[str] = set()

NAME_CASES = [
    # R1 reads before a sure binding
    case("R1-read-after-binding", "a = 1\nb = a", NONE, {"a", "b"}),
    case("R1-read-of-earlier-cell", "b = a", {"a"}, {"b"}),
    case("R1-read-before-binding", "print(a)\na = 1", {"a"}, {"a"}),
    case("R1-swap", "a, b = b, a", {"a", "b"}, {"a", "b"}),
    case("R1-chained-assignment", "a = b = c", {"c"}, {"a", "b"}),
    case("R1-expression-statement", "x = 1\nx", NONE, {"x"}),
    # R2 never inputs
    case("R2-builtins", "print(len(range(3)), sorted([]))", NONE, NONE),
    case("R2-dunders", "print(__name__, __file__, __builtins__, __doc__)", NONE, NONE),
    case("R2-ipython-builtins", "display(df)\nip = get_ipython()", {"df"}, {"ip"}),
    case("R2-rebound-builtin-is-an-output", "list = [1]\ny = list", NONE, {"list", "y"}),
    # R3 augmented and annotated assignment
    case("R3-self-update", "x = x + 1", {"x"}, {"x"}),
    case("R3-augmented", "x += 1", {"x"}, {"x"}),
    case("R3-augmented-after-binding", "x = 0\nx += step", {"step"}, {"x"}),
    case("R3-annotated-with-value", "x: int = 1", NONE, {"x"}),
    case("R3-annotation-only", "x: int", NONE, NONE),
    case("R3-annotation-is-read", "x: Frame = make()", {"Frame", "make"}, {"x"}),
    # R4 conditional bindings
    case("R4-if-one-branch", "if c:\n    x = 1\nprint(x)", {"c", "x"}, {"x"}),
    case("R4-if-both-branches", "if c:\n    x = 1\nelse:\n    x = 2\nprint(x)", {"c"}, {"x"}),
    case("R4-elif-chain", """
        if a:
            x = 1
        elif b:
            x = 2
        print(x)
        """, {"a", "b", "x"}, {"x"}),
    case("R4-for-body-after-loop", "for i in items:\n    last = i\nprint(last, i)",
         {"items", "last", "i"}, {"i", "last"}),
    case("R4-for-body-inside-loop", "for i in items:\n    y = i\n    print(y)", {"items"}, {"i", "y"}),
    case("R4-loop-reads-before-rebinding", "for i in items:\n    print(acc)\n    acc = i",
         {"items", "acc"}, {"i", "acc"}),
    case("R4-while", "while more():\n    n = 1\nprint(n)", {"more", "n"}, {"n"}),
    case("R4-try-import-fallback", """
        try:
            import ujson as json
        except ImportError:
            json = None
        json.dumps
        """, NONE, {"json"}),
    case("R4-try-body-may-fail", "try:\n    x = f()\nexcept Exception:\n    pass\nprint(x)",
         {"f", "x"}, {"x"}),
    case("R4-try-finally-without-handlers", "try:\n    x = f()\nfinally:\n    done = True\nprint(x, done)",
         {"f"}, {"x", "done"}),
    case("R4-try-except-else-finally", """
        try:
            a = load()
        except ValueError as err:
            log(err)
            a = None
        else:
            b = a
        finally:
            c = 1
        print(a, b, c, err)
        """, {"load", "log", "b", "err"}, {"a", "b", "c"}),
    case("R4-and-right-side", "ok = check() and (y := 1)\nprint(y)", {"check", "y"}, {"ok", "y"}),
    case("R4-if-expression-branch", "z = (w := 1) if c else 0\nprint(w)", {"c", "w"}, {"z", "w"}),
    case("R4-with-suppress", "with suppress(KeyError):\n    v = d['k']\nprint(v)", {"suppress", "d", "v"}, {"v"}),
    case("R4-with-completes", "with open(path) as fh:\n    text = fh.read()\nprint(text)", {"path"}, {"fh", "text"}),
    case("R4-match-without-catch-all", """
        match cmd:
            case "go":
                moved = True
        print(moved)
        """, {"cmd", "moved"}, {"moved"}),
    # R5 function and lambda bodies run later
    case("R5-bound-after-def", "def f():\n    return a\na = 1", NONE, {"f", "a"}),
    case("R5-free-in-body", "def f():\n    return helper(x)", {"helper", "x"}, {"f"}),
    case("R5-parameter-shadows", "def f(x):\n    return x", NONE, {"f"}),
    case("R5-local-does-not-leak", "def f():\n    data = load()\n    return data\nprint(data)",
         {"load", "data"}, {"f"}),
    case("R5-local-assigned-later-in-body", "def f():\n    print(v)\n    v = 1", NONE, {"f"}),
    case("R5-nested-shadowing", """
        def outer():
            y = 1
            def inner():
                return y + z
            return inner
        """, {"z"}, {"outer"}),
    case("R5-inner-shadows-outer-input", """
        def outer():
            def inner(data):
                return data
            return inner(data)
        """, {"data"}, {"outer"}),
    case("R5-lambda-body", "f = lambda: k\nk = 1", NONE, {"f", "k"}),
    case("R5-recursion", "def fact(n):\n    return 1 if n < 2 else n * fact(n - 1)", NONE, {"fact"}),
    # R6 definitions
    case("R6-def-time-reads", """
        @register(app)
        def handler(req, n=default, *args, key: Key = kd, **kw) -> Ret:
            return req, n, args, key, kw
        """, {"register", "app", "default", "Key", "kd", "Ret"}, {"handler"}),
    case("R6-class-bases-and-body", "class Model(Base, metaclass=Meta):\n    size = 3\n    twice = size * 2",
         {"Base", "Meta"}, {"Model"}),
    case("R6-class-body-reads-now", "class A:\n    y = x\n    x = 1", {"x"}, {"A"}),
    case("R6-class-body-after-binding", "x = 1\nclass A:\n    y = x", NONE, {"x", "A"}),
    case("R6-class-decorator", "@dataclass(frozen=frozen)\nclass P:\n    x: int = 0", {"dataclass", "frozen"}, {"P"}),
    case("R6-method-decorator-from-class-body", """
        class A:
            deco = make_decorator()
            @deco
            def m(self):
                return other
        """, {"make_decorator", "other"}, {"A"}),
    case("R6-class-in-function-sees-function-locals", """
        def build():
            base = pick()
            class Local(base):
                attr = setting
            return Local
        """, {"pick", "setting"}, {"build"}),
    case("R6-conditional-def", "if c:\n    def f():\n        pass\nf()", {"c", "f"}, {"f"}),
    case("R6-async-def", "async def fetch(url):\n    return await client.get(url)", {"client"}, {"fetch"}),
    # R7 local scopes
    case("R7-class-body-not-visible-in-methods", "class A:\n    x = 1\n    def m(self):\n        return x",
         {"x"}, {"A"}),
    case("R7-class-body-not-visible-in-comprehension", "class A:\n    n = 3\n    items = [n for _ in range(2)]",
         {"n"}, {"A"}),
    case("R7-class-body-first-iterable", "class A:\n    n = [1]\n    m = [x for x in n]", NONE, {"A"}),
    case("R7-annotation-only-makes-a-local", "def f():\n    v: int\n    return v", NONE, {"f"}),
    case("R7-handler-name-in-function-is-local", """
        def f():
            try:
                go()
            except Exception as exc:
                return exc
        """, {"go"}, {"f"}),
    case("R7-list-comprehension", "[x for x in data]", {"data"}, NONE),
    case("R7-comprehension-variable-does-not-leak", "[i for i in r]\nprint(i)", {"r", "i"}, NONE),
    case("R7-dict-comprehension", "squares = {k: v * v for k, v in pairs.items() if v > lo}",
         {"pairs", "lo"}, {"squares"}),
    case("R7-generator-expression", "total = sum(x * w for x in xs)", {"xs", "w"}, {"total"}),
    case("R7-nested-comprehension", "flat = [y for row in grid for y in row]", {"grid"}, {"flat"}),
    case("R7-first-iterable-is-outside", "[x for x in x]", {"x"}, NONE),
    case("R7-lambda-parameters-and-defaults", "key = lambda item, d=default: item[d] + offset",
         {"default", "offset"}, {"key"}),
    case("R7-lambda-argument", "ranked = sorted(rows, key=lambda r: r.score)", {"rows"}, {"ranked"}),
    case("R7-lambda-in-comprehension", "fs = [lambda: i * k for i in range(3)]", {"k"}, {"fs"}),
    # R8 global and nonlocal
    case("R8-global-assignment", "def f():\n    global y\n    y = 1", NONE, {"f", "y"}),
    case("R8-global-read-and-write", "def f():\n    global y\n    y = y + 1", {"y"}, {"f", "y"}),
    case("R8-global-read-only", "def f():\n    global y\n    return y", {"y"}, {"f"}),
    case("R8-nonlocal", """
        def counter():
            count = 0
            def bump():
                nonlocal count
                count += 1
                return count
            return bump
        """, NONE, {"counter"}),
    case("R8-global-at-top-level-is-a-no-op", "global x\nx = 1\ny = x", NONE, {"x", "y"}),
    # R9 walrus
    case("R9-walrus-top-level", "(w := 1)\nprint(w)", NONE, {"w"}),
    case("R9-walrus-in-if-test", "if (n := len(text)) > 3:\n    y = n", {"text"}, {"n", "y"}),
    case("R9-walrus-in-comprehension", "[(last := v) for v in vals]\nprint(last)", {"vals", "last"}, {"last"}),
    case("R9-walrus-in-lambda-is-local", "f = lambda: (t := 1)", NONE, {"f"}),
    case("R9-walrus-in-function-is-local", "def f():\n    return [(m := v) for v in vals], m", {"vals"}, {"f"}),
    # R10 imports
    case("R10-import-dotted", "import a.b.c", NONE, {"a"}),
    case("R10-import-dotted-as", "import a.b as c", NONE, {"c"}),
    case("R10-from-import-as", "from m import x as y, z", NONE, {"y", "z"}),
    case("R10-relative-import", "from . import sibling", NONE, {"sibling"}),
    case("R10-import-then-use", "import numpy as np\narr = np.zeros(n)", {"n"}, {"np", "arr"}),
    case("R10-import-in-function-is-local", "def f():\n    import os\n    return os.getcwd()", NONE, {"f"}),
    # R11 del
    case("R11-del-earlier-name", "del x", {"x"}, {"x"}),
    case("R11-del-own-name", "x = 1\ndel x", NONE, {"x"}),
    case("R11-del-attribute-and-item", "del obj.attr, d[k]", {"obj", "d", "k"}, NONE),
    case("R11-del-in-function-is-local", "def f():\n    del x", NONE, {"f"}),
    # R12 binding targets
    case("R12-nested-tuple-and-star-in-for", "for i, (a, *rest) in items:\n    pass", {"items"}, {"i", "a", "rest"}),
    case("R12-list-target", "[a, b] = pair", {"pair"}, {"a", "b"}),
    case("R12-starred-target", "first, *middle, last = seq", {"seq"}, {"first", "middle", "last"}),
    case("R12-with-tuple-target", "with ctx() as (a, b):\n    pass", {"ctx"}, {"a", "b"}),
    case("R12-except-name-is-not-an-output", "try:\n    run()\nexcept Exception as e:\n    log(e)",
         {"run", "log"}, NONE),
    case("R12-except-name-read-after-handler", "try:\n    run()\nexcept Exception as e:\n    pass\nprint(e)",
         {"run", "e"}, NONE),
    case("R12-match-captures", """
        match cmd:
            case ["go", direction]:
                moved = direction
            case {"x": xpos, **extra}:
                moved = extra
            case Point(x=px, y=0) if px > limit:
                moved = px
            case [first, *others]:
                moved = others
            case _:
                moved = None
        print(moved)
        """, {"cmd", "Point", "limit"}, {"direction", "moved", "xpos", "extra", "px", "first", "others"}),
    case("R12-match-value-pattern-reads", "match c:\n    case Color.RED:\n        hit = 1", {"c", "Color"}, {"hit"}),
    # R13 writes through attributes and subscripts are inputs, not outputs
    case("R13-subscript-assignment", "df['a'] = 1", {"df"}, NONE),
    case("R13-attribute-assignment", "obj.x = 1", {"obj"}, NONE),
    case("R13-indexer-assignment", "df.loc[mask, 'c'] = value", {"df", "mask", "value"}, NONE),
    case("R13-attribute-augmented", "obj.count += n", {"obj", "n"}, NONE),
    # R15/R16 IPython syntax
    case("R15-line-magic", "%matplotlib inline\nx = 1", NONE, {"x"}),
    case("R15-shell-line", "!pip install pandas\nimport pandas", NONE, {"pandas"}),
    case("R15-help-lines", "df.head?\n?df\ndf.tail??\ny = 1", NONE, {"y"}),
    case("R15-shell-assignment", "files = !ls", NONE, {"files"}),
    case("R15-magic-assignment", "env = %env", NONE, {"env"}),
    case("R15-indented-magic", "if debug:\n    %time run()\nelse:\n    run()", {"debug", "run"}, NONE),
    case("R15-magic-looking-text-in-string", "text = '''\n%not a magic\nwhat?\n!nor this\n'''", NONE, {"text"}),
    case("R15-modulo-continuation", "x = (a\n% b)\n%who", {"a", "b"}, {"x"}),
    case("R15-help-line-is-strict", "%who\nx = 1  # why?", NONE, {"x"}),
    case("R15-lone-question-mark", "?\ny = 2", NONE, {"y"}),
    case("R15-magic-in-function", "def f():\n    %time g(a)", {"g", "a"}, {"f"}),
    case("R15-backslash-continuation", "x = a + \\\n    b\n!ls", {"a", "b"}, {"x"}),
    case("R15-multiline-f-string-is-not-magic", 's = f"""\n%{value}\nwhy?\n"""\n%who', {"value"}, {"s"}),
    case("R16-shell-braces", "files = !ls {folder}", {"folder"}, {"files"}),
    case("R16-shell-dollar", "out = !echo $message", {"message"}, {"out"}),
    case("R16-shell-in-loop", "for p in paths:\n    !rm $p", {"paths"}, {"p"}),
    case("R16-magic-dollar", "%cd $workdir", {"workdir"}, NONE),
    case("R16-time-runs-in-namespace", "%time result = fit(model, data)", {"fit", "model", "data"}, {"result"}),
    case("R16-timeit-options", "t = %timeit -o -n 10 run(cfg)", {"run", "cfg"}, {"t"}),
    case("R16-timeit-binds-nothing", "%timeit tmp = work(n)\nprint(tmp)", {"work", "n", "tmp"}, NONE),
    # R18 strings
    case("R18-string-annotation-ignored", "x: 'Frame' = make()", {"make"}, {"x"}),
    case("R18-string-annotations-in-def", "def f(a: 'Model') -> 'Model':\n    return a", NONE, {"f"}),
    case("R18-f-string", "msg = f'{user.name}: {count:>{width}}'", {"user", "count", "width"}, {"msg"}),
    # asynchronous code at top level
    case("async-top-level", """
        await setup()
        async for item in stream():
            seen = item
        async with session() as s:
            r = await s.get(url)
        """, {"setup", "stream", "session", "url"}, {"item", "seen", "s", "r"}),
    case("empty-cell", "", NONE, NONE),
    case("comments-only", "# just a note?", NONE, NONE),
    case("async-comprehension", "result = [await f(x) async for x in agen]", {"f", "agen"}, {"result"}),
]


@pytest.mark.parametrize("source, inputs, outputs", NAME_CASES)
def test_inputs_and_outputs(source: str, inputs: set[str], outputs: set[str]) -> None:
    names = analyze(source)
    assert (set(names.inputs), set(names.outputs)) == (inputs, outputs)


DELETED_CASES = [
    pytest.param("del x", {"x"}, id="R11-top-level"),
    pytest.param("if c:\n    del x, y", {"x", "y"}, id="R11-in-branch"),
    pytest.param("del obj.attr, d[k]", NONE, id="R11-attribute-and-item-are-mutations"),
    pytest.param("def f():\n    del x", NONE, id="R11-local-in-function"),
    pytest.param("def f():\n    global g\n    del g", {"g"}, id="R11-global-in-function"),
]


@pytest.mark.parametrize("source, deleted", DELETED_CASES)
def test_deleted(source: str, deleted: set[str]) -> None:
    names = analyze(source)
    assert set(names.deleted) == deleted
    assert names.deleted <= names.outputs


MUTATED_CASES = [
    pytest.param("df['a'] = 1", {"df"}, id="R13-subscript"),
    pytest.param("obj.x = 1", {"obj"}, id="R13-attribute"),
    pytest.param("obj.x.y[0] = 1", {"obj"}, id="R13-deep-target"),
    pytest.param("a.x, b[0] = pair", {"a", "b"}, id="R13-tuple-of-targets"),
    pytest.param("items[0] += 1", {"items"}, id="R13-augmented-subscript"),
    pytest.param("counts += [1]", {"counts"}, id="R13-augmented-name-from-earlier-cell"),
    pytest.param("del cache[key]", {"cache"}, id="R13-del-item"),
    pytest.param("del obj.attr", {"obj"}, id="R13-del-attribute"),
    pytest.param("for row.value in data:\n    pass", {"row"}, id="R13-for-target"),
    pytest.param("df = load()\ndf['a'] = 1\ndf.b = 2\ndf += 1", NONE, id="R13-own-object"),
    pytest.param("x = 1\nx += 1", NONE, id="R13-augmented-own-name"),
    pytest.param("def f():\n    df['a'] = 1", NONE, id="R13-function-bodies-not-seen"),
    pytest.param("f().x = 1", NONE, id="R13-no-root-name"),
]


@pytest.mark.parametrize("source, mutated", MUTATED_CASES)
def test_mutated(source: str, mutated: set[str]) -> None:
    names = analyze(source)
    assert set(names.mutated) == mutated
    assert names.mutated <= names.inputs
    assert not names.mutated & names.outputs - names.inputs


OPAQUE_CASES = [
    pytest.param("from m import *", "`from m import *`", id="R10-star-import"),
    pytest.param("globals()['x'] = 1", "`globals()`", id="R14-globals"),
    pytest.param("def f():\n    globals().update(d)", "`globals()`", id="R14-globals-in-function"),
    pytest.param("exec(code)", "`exec(...)`", id="R14-exec"),
    pytest.param("value = eval(expr)", "`eval(...)`", id="R14-eval"),
    pytest.param("vars()['x'] = 1", "`vars()`", id="R14-vars"),
    pytest.param("setattr(sys.modules[__name__], 'x', 1)", "sys.modules", id="R14-setattr-sys-modules"),
    pytest.param("sys.modules[__name__].x = 1", "sys.modules", id="R14-assign-sys-modules"),
    pytest.param("get_ipython().user_ns['x'] = 1", "user_ns", id="R14-user-ns"),
    pytest.param("get_ipython().push({'x': 1})", "push", id="R14-push"),
    pytest.param("%run script.py", "%run", id="R14-run-magic"),
    pytest.param("%store -r model", "%store -r", id="R14-store-restore"),
    pytest.param("%reset -f", "%reset", id="R14-reset"),
    pytest.param("exec(code, namespace)", None, id="R14-exec-with-namespace"),
    pytest.param("def f():\n    return locals()", None, id="R14-locals-in-function"),
    pytest.param("setattr(obj, 'x', 1)", None, id="R14-setattr-on-object"),
    pytest.param("%store model", None, id="R14-store-save"),
    pytest.param("x = 1", None, id="R14-plain"),
]


@pytest.mark.parametrize("source, reason_mentions", OPAQUE_CASES)
def test_opaque(source: str, reason_mentions: str | None) -> None:
    names = analyze(source)
    if reason_mentions is None:
        assert (names.opaque, names.reason) == (False, None)
    else:
        assert names.opaque
        assert reason_mentions in names.reason


def test_opaque_reason_names_the_line_and_keeps_static_outputs() -> None:
    names = analyze("x = 1\nfrom helpers import *\nexec(code)")
    assert names.reason.startswith("line 2: ")
    assert "; line 3: " in names.reason
    assert names.outputs == {"x"}


CALLABLE_CASES = [
    pytest.param("f(x)", {"f"}, id="R19-name"),
    pytest.param("mod.f(x)", {"mod"}, id="R19-attribute"),
    pytest.param("a.b.c()", {"a"}, id="R19-dotted"),
    pytest.param("factory()()", {"factory"}, id="R19-call-result"),
    pytest.param("handlers[0](event)", {"handlers"}, id="R19-subscript"),
    pytest.param("print(len(x))", NONE, id="R19-builtins"),
    pytest.param("def g():\n    pass\ng()", NONE, id="R19-defined-in-cell"),
    pytest.param("@cache\ndef h():\n    return helper()", {"cache", "helper"}, id="R19-decorator-and-body"),
    pytest.param("y = [transform(v) for v in vals]", {"transform"}, id="R19-in-comprehension"),
    pytest.param("def f(g):\n    return g()", NONE, id="R19-parameter"),
    pytest.param("%time model = fit(data)", {"fit"}, id="R19-in-time-magic"),
]


@pytest.mark.parametrize("source, callables", CALLABLE_CASES)
def test_free_callables(source: str, callables: set[str]) -> None:
    assert set(free_callables(source)) == callables
    assert free_callables(source) <= analyze(source).inputs


SYNTAX_ERROR_CASES = [
    pytest.param("x = 1\ny = = 2\nz = 3", 2, "y = = 2", id="R17-plain-python"),
    pytest.param("%time f()\nif x\n    pass", 2, "if x", id="R17-after-a-magic"),
    pytest.param("a = (1,\nb = 2", 1, "a = (1,", id="R17-unclosed-bracket"),
    pytest.param("x <= %time f()", 1, "x <= %time f()", id="R17-not-an-assignment-from-magic"),
    pytest.param("for i in r:\n%time f(i)", 2, "%time f(i)", id="R17-magic-not-indented"),
]


@pytest.mark.parametrize("source, lineno, line", SYNTAX_ERROR_CASES)
def test_syntax_error_names_the_line(source: str, lineno: int, line: str) -> None:
    with pytest.raises(CellSyntaxError) as caught:
        analyze(source)
    error = caught.value
    assert isinstance(error, SyntaxError) and isinstance(error, NbflowError)
    assert error.lineno == lineno
    assert error.text == line
    assert f"Line {lineno} of the cell is not valid Python" in str(error)
    assert line in str(error)


def test_null_byte_is_a_cell_syntax_error() -> None:
    with pytest.raises(CellSyntaxError, match="Line 2 of the cell contains a NUL") as caught:
        analyze("x = 1\ny = 2\0")
    assert caught.value.lineno == 2


def test_parser_warnings_do_not_escape() -> None:
    # pytest turns warnings into errors here; an invalid escape warns while parsing.
    assert analyze('pattern = re.compile("\\d+")').inputs == {"re"}


def test_results_are_memoized_and_immutable() -> None:
    source = "memo_y = memo_x + 1"
    first = analyze(source)
    assert analyze(source) is first
    assert isinstance(first, CellNames) and hash(first)
    with pytest.raises(AttributeError):
        first.inputs = frozenset()  # type: ignore[misc]


def test_module_imports_only_the_standard_library() -> None:
    tree = ast.parse(Path(cell_analysis.__file__).read_text())
    imported = {
        name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for name in ([alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module or ""])
    }
    assert imported - set(sys.stdlib_module_names) - {"__future__"} == {"nbflow"}
    assert "IPython" not in imported


THIRTY_LINE_CELL = textwrap.dedent(
    """
    import numpy as np
    from sklearn.model_selection import train_test_split

    %matplotlib inline
    features = [c for c in df.columns if c not in excluded]
    X, y = df[features], df[target]
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=test_size, random_state=seed)

    @cache
    def score(model, data=X_test, *, labels=y_test):
        predictions = model.predict(data)
        return float(np.mean(predictions == labels))

    class Report:
        columns = ["name", "score"]

        def __init__(self, rows):
            self.rows = sorted(rows, key=lambda row: -row[1])

        def top(self, n=3):
            return {name: value for name, value in self.rows[:n]}

    results = []
    for name, factory in candidates.items():
        model = factory(**params.get(name, {}))
        model.fit(X_train, y_train)
        results.append((name, score(model)))
    report = Report(results)
    assert report.rows, "no candidate model was fitted"
    print(f"best: {report.top(1)} of {len(results)}")
    """
)


def test_thirty_line_cell() -> None:
    names = analyze(THIRTY_LINE_CELL)
    assert len(THIRTY_LINE_CELL.strip().splitlines()) == 30
    assert names.inputs == {"df", "excluded", "target", "test_size", "seed", "cache", "candidates", "params"}
    assert names.outputs == {
        "np", "train_test_split", "features", "X", "y", "X_train", "X_test", "y_train", "y_test",
        "score", "Report", "results", "name", "factory", "model", "report",
    }
    assert free_callables(THIRTY_LINE_CELL) == {"cache", "candidates", "params"}


def test_thirty_line_cell_is_analysed_in_under_a_millisecond() -> None:
    runs = 200
    # A different trailing comment each time defeats the memo, so every run parses and walks the cell.
    sources = [f"{THIRTY_LINE_CELL}# run {i}\n" for i in range(runs)]
    started = time.perf_counter()
    for source in sources:
        analyze(source)
    per_cell = (time.perf_counter() - started) / runs
    # The target is < 1 ms; 5 ms keeps the test steady on a loaded CI machine.
    assert per_cell < 0.005, f"{per_cell * 1000:.2f} ms per 30-line cell"
