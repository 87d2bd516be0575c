"""The tools Claude researches with, beside the editing ones: past experiments and its journal.

`view_experiment` and `search_experiments` read the history the engine handed over, the earlier
sessions' experiments included (named by their session); `journal` appends a note to the
session's log, where every later proposal (and a resumed engine) finds it.
"""

from __future__ import annotations

from ratchet.engine.agents import archive
from ratchet.engine.agents.base import Context
from ratchet.engine.agents.claude.tools import ToolResult
from ratchet.engine.protocol import schema

NOTE_CHARS = 2000

TOOLS: list[dict] = [
    {
        "name": "view_experiment",
        "description": "Show one past experiment in full: its diff, verdict and numbers, its "
                       "training curve and the tail of its output. An earlier session's "
                       "experiment (session:number in its table) takes that session too.",
        "input_schema": {"type": "object", "properties": {
            "exp": {"type": "integer", "description": "the experiment number from the table"},
            "session": {"type": "string", "description": "only for an earlier session's "
                                                         "experiment: its session id"}},
            "required": ["exp"]},
    },
    {
        "name": "search_experiments",
        "description": "Find past experiments (kept, discarded or crashed), this session's "
                       "and the earlier sessions', whose description, diff or error mention "
                       "these words, e.g. a constant's name; use it before proposing, so an "
                       "idea is not tried twice under another name.",
        "input_schema": {"type": "object", "properties": {
            "query": {"type": "string", "description": "words or names, e.g. 'WARMUP lr'"}},
            "required": ["query"]},
    },
    {
        "name": "journal",
        "description": "Add a note to your research journal: a hypothesis, what a result "
                       "taught you, what to try next. The journal is handed to you with every "
                       "later proposal.",
        "input_schema": {"type": "object", "properties": {
            "note": {"type": "string", "description": f"at most {NOTE_CHARS} characters"}},
            "required": ["note"]},
    },
]
NAMES = frozenset(tool["name"] for tool in TOOLS)


def apply(context: Context, name: str, args: object) -> ToolResult:
    """Run one research tool; bad arguments come back as text for the model."""
    args = args if isinstance(args, dict) else {}
    if name == "view_experiment":
        exp, session = args.get("exp"), args.get("session")
        if isinstance(exp, str) and ":" in exp and not session:  # "session:number" as one
            session, _, exp = exp.rpartition(":")
        if isinstance(session, str) and session.strip():
            return _view_earlier(context, session.strip(), exp)
        entry = archive.find(context.history, exp)
        if entry is None:
            known = f"{context.history[0].n}..{context.history[-1].n}" if context.history \
                else "none yet"
            return ToolResult(f"no finished experiment {args.get('exp')!r} (finished: {known})",
                              True)
        return ToolResult(archive.view(entry))
    if name == "search_experiments":
        query = args.get("query")
        if not isinstance(query, str) or not query.strip():
            return ToolResult("search_experiments needs a 'query' string", True)
        return ToolResult(archive.search(context.history, query, earlier=context.earlier))
    if name == "journal":
        note = args.get("note")
        if not isinstance(note, str) or not note.strip():
            return ToolResult("journal needs a non-empty 'note' string", True)
        if len(note) > NOTE_CHARS:
            return ToolResult(f"the note has {len(note)} characters; at most {NOTE_CHARS}", True)
        context.record(schema.JOURNAL, text=note.strip())
        return ToolResult("noted in the journal")
    return ToolResult(f"unknown tool {name!r}", True)


def _view_earlier(context: Context, session: str, exp: object) -> ToolResult:
    entry = archive.find(context.earlier, exp, session)
    if entry is not None:
        return ToolResult(archive.view(entry))
    numbers = [e.n for e in context.earlier if e.session == session]
    if numbers:
        return ToolResult(f"no experiment {exp!r} in session {session} (its experiments: "
                          f"{min(numbers)}..{max(numbers)})", True)
    sessions = list(dict.fromkeys(e.session for e in context.earlier))
    return ToolResult(f"no earlier session {session!r} (earlier sessions: "
                      f"{', '.join(sessions) or 'none'})", True)


def summary(name: str, args: object) -> str:
    """One line for the reasoning stream."""
    args = args if isinstance(args, dict) else {}
    if name == "view_experiment":
        session = args.get("session")
        where = f"{session}:" if isinstance(session, str) and session else ""
        return f"[view experiment {where}{args.get('exp', '?')}]"
    if name == "search_experiments":
        return f"[search experiments: {str(args.get('query', ''))[:80]}]"
    return f"[journal] {str(args.get('note', '')).strip()}"
