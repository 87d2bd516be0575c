"""The tools Claude edits with, applied to an in-memory copy of the editable files.

Nothing touches the disk here: the engine commits the finished files itself, after its own check.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_DESCRIPTION = 200

TOOLS: list[dict] = [
    {
        "name": "view_file",
        "description": "Show the current text of an editable file, with your edits so far.",
        "input_schema": {"type": "object", "properties": {
            "path": {"type": "string", "description": "file name, e.g. train.py"}},
            "required": ["path"]},
    },
    {
        "name": "str_replace",
        "description": "Replace one exact occurrence of old_str with new_str in an editable "
                       "file. old_str must occur exactly once; include enough context.",
        "input_schema": {"type": "object", "properties": {
            "path": {"type": "string"},
            "old_str": {"type": "string", "description": "exact text, occurring once"},
            "new_str": {"type": "string"}},
            "required": ["path", "old_str", "new_str"]},
    },
    {
        "name": "write_file",
        "description": "Replace the whole content of an editable file.",
        "input_schema": {"type": "object", "properties": {
            "path": {"type": "string"}, "content": {"type": "string"}},
            "required": ["path", "content"]},
    },
    {
        "name": "finish",
        "description": "Submit the edits made so far as this experiment. The engine checks "
                       "them first and tells you if they cannot run.",
        "input_schema": {"type": "object", "properties": {
            "description": {"type": "string",
                            "description": "one line saying what the change is, e.g. "
                                           "'double the learning rate to 0.02'"}},
            "required": ["description"]},
    },
]


@dataclass
class ToolResult:
    text: str
    is_error: bool = False


class EditBuffer:
    """The editable files as the model has changed them so far."""

    def __init__(self, files: dict[str, str], editable: list[str]):
        self.original = dict(files)
        self.files = dict(files)
        self.editable = list(editable)

    def changed(self) -> dict[str, str]:
        return {k: v for k, v in self.files.items() if self.original.get(k) != v}

    def apply(self, name: str, args: object) -> ToolResult:
        """Run an editing tool; errors come back as text for the model, never as exceptions."""
        if not isinstance(args, dict):
            return ToolResult(f"{name} takes a JSON object of arguments", True)
        path = args.get("path")
        if not isinstance(path, str) or not path:
            return ToolResult(f"{name} needs a 'path' (one of: {', '.join(self.editable)})", True)
        if path not in self.editable:
            return ToolResult(f"{path} may not be edited; the editable files are: "
                              f"{', '.join(self.editable)}", True)
        if name == "view_file":
            return ToolResult(self.files.get(path, ""))
        if name == "write_file":
            content = args.get("content")
            if not isinstance(content, str):
                return ToolResult("write_file needs 'content' as a string", True)
            self.files[path] = content
            return ToolResult(f"wrote {path} ({len(content.splitlines())} lines)")
        if name == "str_replace":
            old, new = args.get("old_str"), args.get("new_str")
            if not isinstance(old, str) or not isinstance(new, str) or not old:
                return ToolResult("str_replace needs non-empty 'old_str' and 'new_str' strings",
                                  True)
            text = self.files.get(path, "")
            count = text.count(old)
            if count != 1:
                where = "does not occur" if count == 0 else f"occurs {count} times"
                return ToolResult(f"old_str {where} in {path}; it must occur exactly once "
                                  "(copy it exactly, with enough surrounding lines)", True)
            self.files[path] = text.replace(old, new, 1)
            return ToolResult(f"edited {path}")
        return ToolResult(f"unknown tool {name!r}", True)


def description_problem(args: object) -> str:
    """Why finish's description is unusable, or ''."""
    text = args.get("description") if isinstance(args, dict) else None
    if not isinstance(text, str) or not text.strip():
        return "finish needs a one-line 'description' of the change"
    if "\n" in text.strip():
        return "the description must be one line"
    if len(text.strip()) > MAX_DESCRIPTION:
        return f"the description must be at most {MAX_DESCRIPTION} characters"
    return ""


def summary(name: str, args: object) -> str:
    """One line for the reasoning stream, e.g. [edit train.py: str_replace]."""
    args = args if isinstance(args, dict) else {}
    if name == "finish":
        return f"[finish: {str(args.get('description', '')).strip()[:MAX_DESCRIPTION]}]"
    if name == "view_file":
        return f"[view {args.get('path', '?')}]"
    return f"[edit {args.get('path', '?')}: {name}]"
