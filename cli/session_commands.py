"""Commands on the engine of a session: run, attach, replay, ctl, stop."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from ratchet.cli import headless
from ratchet.cli.arguments import UserError
from ratchet.cli.workspace_commands import warn_if_unsandboxed
from ratchet.engine.agents import registry
from ratchet.engine.loop import daemon, gitops, lock, resume, study
from ratchet.engine.loop.session import RunOptions, session_dir
from ratchet.engine.protocol import control, paths
from ratchet.engine.runner import compat
from ratchet.engine.workspace import catalog, layout

NEWEST_NAMED = 3  # finished sessions named when none is running


def find_session(ws: layout.Workspace, name: str | None, running_only: bool = False,
                 replay_hint: bool = False) -> Path:
    """The session named (or the newest; the newest running one with `running_only`).
    `replay_hint`: when none runs, the error names the newest finished ones for `ratchet
    replay`, which is what shows a session that has ended."""
    every = paths.sessions(ws.runs_dir())
    found = every
    if name:
        match = [p for p in found if p.name == name] or [p for p in found
                                                          if p.name.startswith(name)]
        if not match:
            raise UserError(f"no session {name!r} in {ws.runs_dir()}")
        return match[-1]
    if running_only:
        found = [p for p in found if paths.is_running(p)]
    if not found and running_only and replay_hint and every:
        newest = [p.name for p in reversed(every[-NEWEST_NAMED:])]
        raise UserError("no running session in this workspace; `ratchet replay [SESSION]` "
                        f"shows one that ended (newest: {', '.join(newest)})")
    if not found:
        raise UserError("no running session in this workspace" if running_only
                        else "no sessions in this workspace yet; start one with `ratchet run`")
    return found[-1]


def free_tag(ws: layout.Workspace, base: str) -> str:
    """Today's date as the tag, with -2, -3, ... when that branch is taken already."""
    heads = {h.name for h in gitops.open_repo(ws.root).heads}
    tag, n = base, 1
    while gitops.branch_name(tag) in heads:
        n += 1
        tag = f"{base}-{n}"
    return tag


def cmd_run(args) -> int:
    if args.compat:
        ws = compat.prepare_checkout(args.workspace or Path.cwd())
    else:
        ws = layout.find(args.workspace)
    config = ws.config()
    if not config.experiment.compat:
        ws.tokens(config)  # the data the engine needs: refused here, before any branch is made
    tag = args.tag or free_tag(ws, time.strftime("%b%d").lower())
    recorded = resume.Recorded()
    if args.resume:
        research = [p for p in paths.sessions(ws.runs_dir()) if not study.study_of(p)]
        previous = [p for p in research if paths.session_tag(p) == tag] if args.tag \
            else research
        if not previous:
            raise UserError("nothing to resume: no earlier session" +
                            (f" with tag {tag!r}" if args.tag else ""))
        folder = previous[-1]
        if paths.is_running(folder):
            raise UserError(f"session {folder.name} is still running (pid "
                            f"{paths.engine_alive(folder)})")
        session, tag = folder.name, paths.session_tag(folder) or tag
        recorded = resume.read(folder / paths.EVENTS)  # the session's own settings stand
        problem = resume.refusal(recorded.settings, {
            "budget": args.budget, "max_experiments": args.max_experiments, "gpus": args.gpus,
            "backend": args.backend, "address": args.address})
        if problem:
            raise UserError(problem)
    else:
        running = [p for p in paths.sessions(ws.runs_dir()) if paths.is_running(p)]
        if running:
            raise UserError(f"session {running[-1].name} is already running in this workspace; "
                            f"attach to it, or `ratchet stop` it first")
        session = daemon.new_session_id(tag)
    was = recorded.settings.get("agent")  # a resume goes on with the session's agent
    agent = args.agent or (was if was in registry.NAMES else registry.default_kind(config))
    registry.create(agent, config)  # fail here, not in the detached engine
    end_note = ""
    if config.experiment.compat:
        print(f"ratchet: note: {config.experiment.compat} compat mode: val_bpb is self-reported "
              f"by train.py, which runs unsandboxed", file=sys.stderr)
        end_note = _compat_branches(ws, tag, args.resume)
    else:
        warn_if_unsandboxed()
    if (args.backend or recorded.settings.get("backend") or config.loop.backend) == "ray":
        from ratchet.engine.workers import ray_backend

        try:
            ray_backend.import_ray()
        except ray_backend.RayUnavailable as exc:
            raise UserError(str(exc)) from None
    elif args.address:
        raise UserError("--address is for --backend ray")
    try:  # one engine per workspace: taken here, handed to the engine, held for its life
        held = lock.acquire(ws.runs_dir(), session)
    except lock.Busy as exc:
        raise UserError(str(exc)) from None
    try:
        # the engine checks again; checking here too reports the problem before it detaches
        gitops.check_can_start(gitops.open_repo(ws.root), tag, args.resume,
                               tuple(config.experiment.editable),
                               recorded.tips() if args.resume else ())
        options = RunOptions(session=session, tag=tag, agent=agent, budget=args.budget,
                             max_experiments=args.max_experiments, resume=args.resume,
                             gpus=args.gpus, backend=args.backend, address=args.address,
                             lock_fd=held)
        folder = session_dir(ws, session)
        # a resume follows from here; what the engine says at its start is past log_since
        since, log_since = _size(folder / paths.EVENTS), _size(folder / paths.ENGINE_LOG)
        folder, pid = daemon.spawn(ws, options)
        lock.record(held, session, pid)
    finally:
        os.close(held)  # the engine holds its own copy
    refused = daemon.wait_started(folder, pid, since, log_since)
    if refused:
        raise UserError(refused)
    print(f"engine started: session {session} (pid {pid}, agent {agent}, branch ratchet/{tag})",
          flush=True)
    if not args.headless:
        if sys.stdin.isatty() and sys.stdout.isatty():
            return dashboard(folder, end_note)
        print("stdout is not a terminal; following in headless mode", flush=True)
    return headless.follow(folder, pid=pid, since=since,
                           state=recorded.state if args.resume else None, end_note=end_note)


def _compat_branches(ws: layout.Workspace, tag: str, resume: bool) -> str:
    """Say where a compat session starts from when an earlier one left the checkout on its
    branch; and what its end line says: the branch it leaves the checkout on, and the way back
    (the checkout is the person's own, not a workspace made for Ratchet)."""
    repo = gitops.open_repo(ws.root)
    try:
        start = repo.active_branch.name
    except TypeError:  # a detached HEAD: nothing to go back to by name
        start = ""
    if start == gitops.branch_name(tag):  # a resume: it goes on where it was
        start = ""
    elif start.startswith(gitops.branch_name("")) and not resume:
        print(f"compat: the checkout is on {start}, where an earlier session left it; this "
              f"session branches from {start} (`git checkout` another branch first to start "
              f"from there)", flush=True)
    back = f" (`git checkout {start}` goes back)" if start else ""
    return f"the checkout is on {gitops.branch_name(tag)}{back}"


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def dashboard(folder: Path, end_note: str = "") -> int:
    """Open the dashboard on a session; after `q`, say what the engine is doing (and
    `end_note` once the session has ended)."""
    from ratchet.tui import launch  # the engine itself never imports the dashboard

    launch.run_dashboard(folder)
    if paths.is_running(folder):
        print(f"dashboard closed; the engine keeps running (session {folder.name}): "
              f"`ratchet attach` to reattach, `ratchet stop` to stop it")
    else:
        print(f"dashboard closed; session {folder.name} is not running "
              f"(`ratchet status {folder.name}` for its summary)"
              + (f"; {end_note}" if end_note else ""))
    return 0


def cmd_attach(args) -> int:
    ws = layout.find(args.workspace)
    folder = find_session(ws, args.session, running_only=args.session is None, replay_hint=True)
    if args.web:
        from ratchet.tui import launch

        print(f"serving the dashboard of session {folder.name} on http://127.0.0.1:{args.port} "
              f"({'with' if args.allow_control else 'without'} control); from your machine: "
              f"ssh -L {args.port}:127.0.0.1:{args.port} <this host>", flush=True)
        launch.serve_web(folder, args.port, args.allow_control)
        return 0
    if args.allow_control:
        raise UserError("--allow-control goes with --web (the terminal dashboard always has it)")
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise UserError("attach needs a terminal; use `ratchet attach --web` or `ratchet status`")
    return dashboard(folder)


def cmd_replay(args) -> int:
    target = args.session
    if target and target.endswith(".jsonl") and Path(target).is_file():
        log_path = Path(target)  # a log file on its own, e.g. one copied from another machine
    else:
        ws = catalog.locate(args.workspace)
        log_path = find_session(ws, target) / paths.EVENTS
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise UserError("replay needs a terminal; `ratchet report` prints a session's summary")
    from ratchet.tui import replay_app  # the engine itself never imports the dashboard

    replay_app.run_replay(log_path, args.speed)
    return 0


def cmd_ctl(args) -> int:
    ws = layout.find(args.workspace)
    folder = find_session(ws, args.session, running_only=True)
    extra = {"text": " ".join(args.text)} if args.cmd == "steer" else {}
    if args.cmd == "steer" and not extra["text"].strip():
        raise UserError("steer needs a note, e.g. ratchet ctl steer 'try a wider model'")
    try:
        reply = control.send(folder / "control.sock", args.cmd, **extra)
    except control.ControlError as exc:
        raise UserError(str(exc)) from None
    if not reply.get("ok"):
        raise UserError(reply.get("error", "the engine refused the command"))
    print(f"{args.cmd}: sent to session {folder.name}")
    return 0


def cmd_stop(args) -> int:
    ws = layout.find(args.workspace)
    folder = find_session(ws, args.session, running_only=True)
    pid = paths.engine_alive(folder)  # proven the session's engine, not a reused number
    if not pid:
        raise UserError(f"session {folder.name} is not running")
    try:
        control.send(folder / "control.sock", "stop")
    except control.ControlError:
        if paths.engine_alive(folder) == pid:  # checked again just before the signal
            os.kill(pid, signal.SIGTERM)  # no socket answer: fall back to the signal
    deadline = time.monotonic() + args.wait
    while paths.engine_alive(folder) == pid and time.monotonic() < deadline:
        time.sleep(0.2)
    if paths.engine_alive(folder) == pid:
        raise UserError(f"engine (pid {pid}) is still stopping; check `ratchet status`")
    print(f"stopped session {folder.name}")
    return 0
