"""`callcenter ...`: every command reads the same configuration (file + environment)."""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import os
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from callcenter.logs import setup_logging
from core.disk import private_umask
from core.settings import Settings, SettingsError, load_settings

log = logging.getLogger("callcenter")


class CommandError(Exception):
    """A user-facing failure: printed as one line, exit status 1."""


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    private_umask()  # every file any command creates (database, recordings, model) is ours alone
    try:
        settings = load_settings(args.config)
        setup_logging(settings.log, settings.node_name)
        return args.handler(args, settings) or 0
    except (SettingsError, CommandError) as error:
        print(f"错误 / error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="callcenter", description="报修热线 repair hotline service")
    parser.add_argument("--config", help="TOML configuration file (default: $CALLCENTER_CONFIG)")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the service (web console; lines when configured)")
    serve.add_argument("--host", help="listen address (default: web.host, 127.0.0.1)")
    serve.add_argument("--port", type=int, help="listen port (default: web.port, 8080)")
    serve.set_defaults(handler=cmd_serve)

    db = commands.add_parser("db", help="database schema").add_subparsers(metavar="ACTION")
    db.add_parser("upgrade", help="create or upgrade the database schema").set_defaults(handler=cmd_db_upgrade)

    user = commands.add_parser("user", help="staff accounts").add_subparsers(metavar="ACTION")
    add = user.add_parser("add", help="add a staff account; the password is read from standard input")
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=["frontdesk", "engineer", "manager", "admin"])
    add.add_argument("--display-name", default="")
    add.add_argument("--engineer", default="", help="for role engineer: the engineer's name in the directory")
    add.set_defaults(handler=cmd_user_add)

    for noun, header in (("residents", "phone,name,building,unit,room"), ("engineers", "name,phone,skills")):
        group = commands.add_parser(noun, help=f"the {noun} directory").add_subparsers(metavar="ACTION")
        load = group.add_parser("import", help=f"add or update {noun} from a UTF-8 CSV with header {header}")
        load.add_argument("file", type=Path)
        if noun == "residents":
            load.add_argument("--replace", action="store_true",
                              help="the file is the whole directory: drop the numbers missing from it")
        load.set_defaults(handler=cmd_import, noun=noun)
    roster = commands.add_parser("roster", help="the duty roster (值班表)").add_subparsers(metavar="ACTION")
    load = roster.add_parser(
        "import", help="replace the weekly duty pattern from a UTF-8 CSV file",
        description="Header name,weekdays,start,end,skill,chain. weekdays: 1-5 or 6,7 (1 = Monday); start, end: "
                    "HH:MM, an end at or before the start crosses midnight; skill: empty for every kind of repair; "
                    "chain: engineers in the order to ring them, 张工>李工>王主管 (张工:40 rings 张工 40 s). "
                    "The file replaces every shift; a bad line refuses the whole file.")
    load.add_argument("file", type=Path)
    load.set_defaults(handler=cmd_roster_import)
    override = roster.add_parser("override", help="someone stands in for someone else (swap, leave, holiday)")
    override.add_argument("--from", dest="starts", required=True, metavar="ISO",
                          help="ISO time, or a date (from its 00:00); without an offset: the site's zone")
    override.add_argument("--to", dest="ends", required=True, metavar="ISO",
                          help="ISO time (exclusive), or a date (to its end)")
    override.add_argument("--replace", required=True, metavar="NAME", help="the engineer who is away")
    override.add_argument("--with", dest="substitute", metavar="NAME",
                          help="the engineer who stands in (omit: nobody does)")
    override.add_argument("--note", default="", help="why, e.g. 调休")
    override.set_defaults(handler=cmd_roster_override)

    backup = commands.add_parser("backup", help="copy the database, recordings and settings file to DIR",
                                 description="SQLite: a consistent copy while the service runs (SQLite's online backup). "
                                             "PostgreSQL: recordings and settings only; back the database up with pg_dump.")
    backup.add_argument("directory", type=Path, metavar="DIR", help="a new or empty directory")
    backup.set_defaults(handler=cmd_backup)
    restore = commands.add_parser("restore", help="put a backup made by `callcenter backup` back (stop the service first)")
    restore.add_argument("directory", type=Path, metavar="DIR")
    restore.add_argument("--force", action="store_true", help="replace a database that already holds tickets")
    restore.set_defaults(handler=cmd_restore)

    alerts = commands.add_parser("alerts", help="alerts to the managers' group chat (企业微信/钉钉 robot)")
    alerts.add_subparsers(metavar="ACTION").add_parser(
        "test", help="send a test message to alerts.webhook_url now").set_defaults(handler=cmd_alerts_test)

    setup = commands.add_parser("setup", help="install optional parts").add_subparsers(metavar="PART")
    asr = setup.add_parser("asr", help="install the Chinese speech model (download, or --from a copied archive)")
    asr.add_argument("--from", dest="archive", type=Path, help="a copied vosk-model-small-cn-0.22.zip")
    asr.set_defaults(handler=cmd_setup_asr)

    transcribe = commands.add_parser("transcribe", help="a WAV recording to text and a draft ticket")
    transcribe.add_argument("file", type=Path)
    transcribe.add_argument("--now", help="the call's time, ISO 8601 (default: now)")
    transcribe.add_argument("--json", action="store_true", help="print one JSON object")
    transcribe.set_defaults(handler=cmd_transcribe)

    dispatcher = commands.add_parser(
        "kamailio-config", help="write kamailio.cfg for Kamailio's dispatcher in front of several nodes",
        description="Writes kamailio.cfg and dispatcher.list (Debian's kamailio 5.6) into --out: calls from the "
                    "--allow peers go to the --node hotline nodes; a node that does not answer, or answers 486 or "
                    "5xx, passes the call to the next; nodes are probed with OPTIONS. Run: kamailio -f DIR/kamailio.cfg")
    dispatcher.add_argument("--listen", required=True, metavar="IP:PORT", help="where Kamailio takes calls")
    dispatcher.add_argument("--node", required=True, action="append", metavar="IP:PORT",
                            help="a node's hotline line (its [[lines]] listen); repeat for each node")
    dispatcher.add_argument("--allow", required=True, action="append", metavar="IP[/BITS]",
                            help="who may send calls: the PBX or carrier trunk; repeat for more")
    dispatcher.add_argument("--algorithm", choices=["least-loaded", "round-robin"], default="least-loaded")
    dispatcher.add_argument("--probe-seconds", type=int, default=5, help="OPTIONS probe interval (default 5)")
    dispatcher.add_argument("--out", required=True, type=Path, metavar="DIR",
                            help="directory for kamailio.cfg and dispatcher.list, e.g. /etc/kamailio")
    dispatcher.set_defaults(handler=cmd_kamailio_config)

    triage = commands.add_parser("triage", help="read a caller's words into a draft ticket")
    triage.add_argument("text", help="what the caller said, e.g. 三号楼二单元一一零一厨房水管爆了")
    triage.add_argument("--now", help="the call's time, ISO 8601 (default: now, in the site's time zone)")
    triage.add_argument("--json", action="store_true", help="print the draft as one JSON object")
    triage.set_defaults(handler=cmd_triage)
    return parser


def call_time(value: str | None, settings: Settings) -> datetime:
    """``--now``: an ISO time (without an offset: the site's zone), or the present moment."""
    if not value:
        return datetime.now(settings.tz)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise CommandError(f"--now 不是 ISO 8601 时间 / not an ISO 8601 time: {value!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=settings.tz)


def print_draft(draft: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(draft, ensure_ascii=False))
        return
    address = draft["address"]
    print("地址 address:", " ".join(f"{k}={v}" for k, v in address.items() if v) or "—")
    for key in ("category", "urgency", "phone", "summary"):
        print(f"{key}:", draft[key] if draft[key] is not None else "—")
    if draft["appointment"]:
        print("appointment:", draft["appointment"]["start"], "—", draft["appointment"]["end"])
    for word in draft["emergency_words"]:
        print(f"emergency word: {word['word']} ({word['kind']}) at {word['start']}-{word['end']}")


def cmd_triage(args, settings: Settings) -> int:
    from core.triage import triage

    if not args.text.strip():
        raise CommandError("没有文字可分析 / the text is empty")
    print_draft(triage(args.text, call_time(args.now, settings), settings).to_dict(), args.json)
    return 0


def cmd_kamailio_config(args, settings: Settings) -> int:
    from callcenter.kamailio_config import ConfigError, DispatcherConfig, endpoint, network

    try:
        config = DispatcherConfig(endpoint(args.listen, "--listen"),
                                  tuple(endpoint(node, "--node") for node in args.node),
                                  tuple(network(peer) for peer in args.allow), args.algorithm, args.probe_seconds)
        command = "callcenter kamailio-config " + " ".join(sys.argv[2:] if sys.argv[1:2] == ["kamailio-config"]
                                                           else [])
        written = config.write(args.out, command.strip())
    except ConfigError as error:
        raise CommandError(str(error)) from None
    except OSError as error:
        raise CommandError(f"无法写入 / cannot write {args.out}: {error}") from None
    for path in written:
        print(f"已写入 / written: {path}")
    print(f"检查 / check: kamailio -c -f {written[0]}\n运行 / run: kamailio -f {written[0]}")
    return 0


def cmd_setup_asr(args, settings: Settings) -> int:
    from callcenter.asr import model

    models_dir = settings.data_dir / "models"
    try:
        if args.archive:
            print(f"校验并安装 / verifying and installing {args.archive}")
            path = model.install_from_archive(args.archive, models_dir)
        else:
            archive = models_dir / f"{model.MODEL_NAME}.zip"
            print(f"下载 / downloading {model.MODEL_URL}")
            model.download(model.MODEL_URL, archive, model.MODEL_SHA256, progress=progress_bar)
            print()
            path = model.install_from_archive(archive, models_dir)
            archive.unlink()
    except model.ModelError as error:
        raise CommandError(str(error)) from None
    print(f"语音识别模型已安装 / speech model installed: {path}")
    if settings.asr.model_path and Path(settings.asr.model_path).resolve() != path.resolve():
        print(f"注意 / note: asr.model_path is set to {settings.asr.model_path}; clear it to use this model")
    return 0


def progress_bar(done: int, total: int | None) -> None:
    if total:
        filled = done * 40 // total
        print(f"\r[{'#' * filled}{'.' * (40 - filled)}] {done / 2**20:6.1f}/{total / 2**20:.1f} MB",
              end="", flush=True)
    else:
        print(f"\r{done / 2**20:6.1f} MB", end="", flush=True)


def cmd_transcribe(args, settings: Settings) -> int:
    from callcenter.asr.audio import AudioError
    from callcenter.asr.model import ModelError, load_model, model_status
    from callcenter.asr.transcribe import transcribe_file
    from core.triage import triage

    status = model_status(settings.asr.model_path or None, settings.data_dir)
    if not status.ready or status.path is None:  # ready: a path
        raise CommandError(status.message)
    try:
        result = transcribe_file(args.file, load_model(status.path))
    except AudioError as error:
        raise CommandError(str(error)) from None
    except ModelError as error:
        raise CommandError(f"{error}; 请运行 / run `callcenter setup asr`") from None
    result["draft"] = triage(result["text"], call_time(args.now, settings), settings).to_dict()
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        print("文字 text:", result["text"] or "（无 / none）")
        print_draft(result["draft"], as_json=False)
    return 0


def _sessions(settings: Settings):
    from core.migrate import open_database
    from core.store import make_session_factory

    try:
        return make_session_factory(open_database(settings.database_url))
    except Exception as error:  # a wrong URL or an unreachable server: say which, briefly
        raise CommandError(f"无法打开数据库 / cannot open the database: {error}") from None


def cmd_serve(args, settings: Settings) -> int:
    from dataclasses import replace

    from callcenter.app import serve
    from callcenter.ivr.prompts import PromptError
    from core.disk import make_private

    web = replace(settings.web, host=args.host or settings.web.host, port=args.port or settings.web.port)
    settings = replace(settings, web=web)  # --host also names a host the console answers to (web.hosts)
    make_private(settings)  # files an older version left readable by others (it says how many)
    if not settings.web.hosts and web.host in ("0.0.0.0", "::"):
        log.warning("web.host %s listens everywhere but web.hosts is empty: only the loopback names are "
                    "served; set web.hosts to the names staff type in the browser", web.host)
    try:
        serve(settings)
    except PromptError as error:
        raise CommandError(f"拒绝启动 / refusing to start: {error}") from None
    return 0


def cmd_backup(args, settings: Settings) -> int:
    from callcenter.backup import BackupError, backup, postgres_hint, sqlite_path

    config = args.config or os.environ.get("CALLCENTER_CONFIG")
    try:
        summary = backup(settings, args.directory, Path(config) if config else None)
    except (BackupError, OSError) as error:
        raise CommandError(f"备份失败 / backup failed: {error}") from None
    print(f"已备份到 / backed up to {summary.directory}: {summary.describe()}")
    if sqlite_path(settings) is None:
        print(postgres_hint(settings, summary.directory))
    return 0


def cmd_restore(args, settings: Settings) -> int:
    from callcenter.backup import SETTINGS_FILE, BackupError, postgres_hint, restore

    try:
        summary = restore(settings, args.directory, args.force)
    except (BackupError, OSError) as error:
        raise CommandError(f"恢复失败 / restore failed: {error}") from None
    print(f"已从 {summary.directory} 恢复 / restored: {summary.describe()}")
    if summary.database == "postgresql":
        print(postgres_hint(settings, summary.directory))
    if summary.settings_file:
        print(f"配置文件未覆盖，请自行比对 / the settings file was not replaced; compare yours with "
              f"{summary.directory / SETTINGS_FILE}")
    return 0


def cmd_alerts_test(args, settings: Settings) -> int:
    import asyncio

    from callcenter.alert_sender import SendError, send_now, shown_url
    from core import alerts

    if not settings.alerts.webhook_url:
        raise CommandError("未配置 alerts.webhook_url（或环境变量 CALLCENTER_ALERTS_WEBHOOK_URL）/ "
                           "no alerts.webhook_url configured")
    now = datetime.now(settings.tz)
    text = alerts.message(alerts.TEST, settings, f"节点 {settings.node_name} 于 {now:%Y-%m-%d %H:%M:%S} 发送。"
                                                 "收到这条消息，说明告警设置正确。")
    where = shown_url(settings.alerts.webhook_url)
    try:
        asyncio.run(send_now(settings.alerts, text))
    except SendError as error:
        raise CommandError(f"测试消息发送失败 / the test message was not taken by {where}: {error}") from None
    print(f"测试消息已发送 / test message sent to {where}")
    return 0


def cmd_db_upgrade(args, settings: Settings) -> int:
    _sessions(settings)
    print("数据库已是最新 / database schema is up to date")
    return 0


def read_password(prompt: str = "密码 / password: ") -> str:
    if sys.stdin.isatty():
        first = getpass.getpass(prompt)
        if first != getpass.getpass("再次输入 / again: "):
            raise CommandError("两次输入的密码不一致 / passwords differ")
        return first
    return sys.stdin.readline().rstrip("\r\n")


def cmd_user_add(args, settings: Settings) -> int:
    from core.accounts import AccountError, add_user

    password = read_password()
    with _sessions(settings)() as session, session.begin():
        try:
            user = add_user(session, args.name, password, args.role, datetime.now(UTC),
                            args.display_name, args.engineer)
        except AccountError as error:
            raise CommandError(str(error)) from None
        print(f"已添加用户 / added user {user.username} ({user.role})")
    return 0


def cmd_import(args, settings: Settings) -> int:
    from core import directory

    columns, load = {
        "residents": (directory.RESIDENT_COLUMNS, directory.import_residents),
        "engineers": (directory.ENGINEER_COLUMNS, directory.import_engineers),
    }[args.noun]
    options = {"replace": True} if getattr(args, "replace", False) else {}
    try:
        rows = directory.read_csv(args.file, columns)
        with _sessions(settings)() as session, session.begin():
            result = load(session, rows, **options)
    except directory.DirectoryError as error:
        raise CommandError(f"{error}（未导入任何记录 / nothing imported）") from None
    print(f"新增 {result.added}，更新 {result.updated} / added {result.added}, updated {result.updated}")
    if args.noun == "engineers":  # callers hear who is coming by name (espeak-ng; without it, no name)
        from callcenter.ivr.who_is_coming import make_name_prompts

        made = make_name_prompts(settings.data_dir, [row["name"] for row in rows])
        if not all(made.values()):
            print(f"未能生成姓名语音 / no name prompt for: {'、'.join(n for n, ok in made.items() if not ok)}"
                  "（来电者将听到不含姓名的通知 / callers hear the sentence without the name）")
    if options:
        print(f"删除文件中没有的号码 {result.removed} 个 / removed {result.removed} numbers not in the file")
    return 0


def cmd_roster_import(args, settings: Settings) -> int:
    from core import directory, roster_store

    try:
        rows = directory.read_csv(args.file, roster_store.SHIFT_COLUMNS)
        with _sessions(settings)() as session, session.begin():
            shifts = roster_store.replace_shifts(session, rows)
    except (directory.DirectoryError, roster_store.RosterError) as error:
        raise CommandError(f"{error}（未导入任何班次 / nothing imported）") from None
    print(f"已导入 {len(shifts)} 个班次 / imported {len(shifts)} shifts")
    print_gaps(settings)
    return 0


def cmd_roster_override(args, settings: Settings) -> int:
    from core import roster_store
    from core.base import Actor
    from core.tickets import Role

    starts, ends = roster_time(args.starts, settings, "--from"), roster_time(args.ends, settings, "--to", end=True)
    try:
        with _sessions(settings)() as session, session.begin():
            replaced = roster_store.engineer_named(session, args.replace)
            substitute = roster_store.engineer_named(session, args.substitute) if args.substitute else None
            roster_store.add_override(session, starts, ends, replaced, substitute, Actor("cli", Role.ADMIN),
                                      datetime.now(UTC), args.note)
    except roster_store.RosterError as error:
        raise CommandError(str(error)) from None
    span = f"{starts.isoformat(timespec='minutes')} — {ends.isoformat(timespec='minutes')}"
    print(f"已登记 / recorded: {span} {args.substitute or '无人'} 替 {args.replace} 值班")
    print_gaps(settings)
    return 0


def roster_time(value: str, settings: Settings, option: str, end: bool = False) -> datetime:
    """An ISO time (no offset: the site's zone), or a date: its first moment, or for an end its last."""
    try:
        if len(value) == 10:
            day = date.fromisoformat(value) + timedelta(days=1 if end else 0)
            return datetime.combine(day, datetime.min.time(), tzinfo=settings.tz)
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise CommandError(f"{option} 应为 ISO 8601 日期或时间，例如 2026-11-27 或 2026-11-27T20:00："
                           f"{value!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=settings.tz)


def print_gaps(settings: Settings, days: int = 7) -> None:
    """After a change: every slot with nobody to ring in the coming week, so nobody finds out at night."""
    from core import roster_store

    now = datetime.now(settings.tz)
    with _sessions(settings)() as session:
        roster = roster_store.load_roster(session, settings, since=now)
    for gap in roster_store.upcoming_gaps(roster, now, settings, days):
        shift = f"班次「{gap.shift}」无人可呼叫" if gap.shift else "没有排班"
        starts, ends = gap.starts_at.astimezone(settings.tz), gap.ends_at.astimezone(settings.tz)
        print(f"注意 / warning: {starts:%m-%d %H:%M} 至 {ends:%m-%d %H:%M} {gap.skill or '全部技能'}：{shift}")


if __name__ == "__main__":
    sys.exit(main())
