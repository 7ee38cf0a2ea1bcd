"""Settings: built once from embedded defaults, an optional TOML file and the environment.

Every key can be overridden by an environment variable named after it:
``section.key`` -> ``CALLCENTER_SECTION_KEY``, top-level ``data_dir`` -> ``CALLCENTER_DATA_DIR``.
Nothing else in the code reads ``os.environ``; the settings object is passed down.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass, replace
from datetime import date, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from core.base import WindowError, parse_windows
from core.contacts import ContactError, check_contact

ENV_PREFIX = "CALLCENTER_"


class SettingsError(ValueError):
    """A configuration file or variable that cannot be used; the message names it."""


def default_node_name() -> str:
    """The machine's short host name: one node per machine needs no setting."""
    return socket.gethostname().split(".")[0][:64] or "node"


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "callcenter"


LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True)
class WebSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    session_hours: int = 12
    # Set true behind HTTPS so the session cookie never travels in clear text.
    cookie_secure: bool = False
    # The host names the console answers to (the Host header); anything else is refused, which also
    # stops DNS rebinding. Empty: the loopback names and ``host``.
    hosts: tuple[str, ...] = ()
    # Reverse proxies (addresses) whose X-Forwarded-For / X-Forwarded-Proto are believed: the client's
    # address in the audit log and the login throttle is then the one the proxy saw.
    trusted_proxies: tuple[str, ...] = ()
    # Who may read GET /metrics without logging in (addresses or networks); behind a trusted proxy,
    # the address the proxy saw counts. Default: this machine only.
    metrics_allow: tuple[str, ...] = ("127.0.0.0/8", "::1")
    # The console's address as staff reach it (e.g. https://baoxiu.example.com): links in group-chat
    # alerts point there. Empty: http://host:port.
    public_url: str = ""

    def __post_init__(self) -> None:
        if self.public_url and not re.match(r"https?://[^/\s]+", self.public_url):
            raise SettingsError("web.public_url 应为 http(s):// 地址 / must be an http(s) URL")
        if self.session_hours < 1:
            raise SettingsError("web.session_hours 至少为 1 / must be at least 1")
        for network in self.metrics_allow:
            try:
                ipaddress.ip_network(network.strip(), strict=False)
            except ValueError:
                raise SettingsError(f"web.metrics_allow: {network!r} 不是地址或网段 / is not an address or network") from None

    def console_url(self, path: str = "") -> str:
        """A page of the console as a link for staff (it asks them to log in)."""
        base = self.public_url.rstrip("/") or f"http://{self.host}:{self.port}"
        return base + path

    def allowed_hosts(self, listen_host: str | None = None) -> frozenset[str]:
        """Host names (lower case, no port, IPv6 without brackets) requests may name."""
        if self.hosts:
            names = set(self.hosts)
        else:
            names = {*LOOPBACK_NAMES, self.host, listen_host or self.host}
        names = {name.strip().lower().strip("[]") for name in names}
        return frozenset(names - {"", "0.0.0.0", "::"})


@dataclass(frozen=True)
class DatabaseSettings:
    # Empty means a SQLite file in the data directory.
    url: str = ""


@dataclass(frozen=True)
class SlaSettings:
    """Time limits of docs/process.md "Time limits"; each is a setting with the documented default."""

    record_minutes: int = 2  # front desk records (reviews) the call
    notify_minutes: int = 3  # engineering is notified after recording
    price_review_minutes: int = 15  # supervisor reviews a non-standard item
    paid_now_arrival_minutes: int = 10  # paid in-home item, resident wants it now
    appointment_lead_minutes: int = 5  # arrive this long before the appointment
    public_notify_minutes: int = 10  # public-facility report: notify engineering
    public_arrival_minutes: int = 15  # public-facility report: arrive
    emergency_arrival_minutes: int = 30
    emergency_completion_hours: int = 8
    general_completion_hours: int = 24
    small_completion_hours: int = 48
    non_urgent_completion_hours: int = 72
    eta_slip_minutes: int = 20  # call the resident when the ETA slips by this much
    # ... after the desk has had this long to stop that call (core.eta)
    eta_slip_hold_minutes: int = 3
    daily_report_time: str = "17:00"  # every ticket not done by then is listed

    def daily_report_at(self) -> time:
        hour, minute = self.daily_report_time.split(":")
        return time(int(hour), int(minute))


@dataclass(frozen=True)
class AsrSettings:
    # Empty: the model installed by `callcenter setup asr` in the data directory.
    model_path: str = ""
    end_silence_seconds: float = 1.0
    max_utterance_seconds: float = 30.0
    # Calls that may use a recogniser at once on this node; 0: from the cores (callcenter/asr/capacity.py).
    max_streams: int = 0

    def __post_init__(self) -> None:
        if self.max_streams < 0:
            raise SettingsError(f"asr.max_streams 应为 0（按CPU核数）或正整数 / must be 0 (from the cores) or a "
                                f"positive number, not {self.max_streams}")


def _contact(name: str, value: str) -> None:
    """A number or SIP address that will be rung (core/contacts.py), refused here if it cannot be."""
    try:
        check_contact(value)
    except ContactError as error:
        raise SettingsError(f"{name}: {error}") from None


def _windows(name: str, spans: tuple[str, ...]) -> tuple[tuple[time, time], ...]:
    """Clock-time windows (core.base.parse_windows), refused with the setting's name if unreadable."""
    try:
        return parse_windows(spans)
    except WindowError as error:
        raise SettingsError(f"{name} {error}") from None


@dataclass(frozen=True)
class HotlineSettings:
    # While the front desk is staffed, 0 transfers the caller to this extension.
    desk_extension: str = ""
    desk_hours: tuple[str, ...] = ("08:30-17:30",)
    max_description_seconds: float = 45.0
    no_input_seconds: float = 6.0

    def __post_init__(self) -> None:
        if self.desk_extension:
            _contact("hotline.desk_extension", self.desk_extension)
        self.desk_windows()  # a bad entry stops the start, not the call of somebody who presses 0

    def desk_windows(self) -> tuple[tuple[time, time], ...]:
        """When the front desk is staffed, as (start, end) pairs in the site's time (none: never)."""
        return _windows("hotline.desk_hours", self.desk_hours) if self.desk_hours else ()


@dataclass(frozen=True)
class CalloutSettings:
    """The emergency call-out: whom the duty roster's chain rings, how long, how often."""

    line: str = ""  # the [[lines]] name used to dial out
    ring_seconds: int = 25  # per link, unless the roster gives that link its own time
    rounds: int = 2  # how many times the whole chain is tried before the last resort
    last_resort: str = ""  # a number or SIP URI rung once after the rounds (e.g. the 24-hour control room)
    # A second emergency from the same place and kind within this window is the same incident.
    incident_window_minutes: int = 60
    alert_contacts: tuple[str, ...] = ()  # managers told when nobody took an emergency
    # Which roster skill an emergency category needs ("category=skill"); other categories: anyone on duty.
    category_skills: tuple[str, ...] = ("plumbing=水电", "electrical=水电", "elevator=电梯", "gas=燃气")

    def __post_init__(self) -> None:
        if self.ring_seconds < 1:
            raise SettingsError("callout.ring_seconds 应为正整数 / must be at least 1")
        if self.rounds < 1:
            raise SettingsError("callout.rounds 至少为 1 / must be at least 1")
        if self.last_resort:
            _contact("callout.last_resort", self.last_resort)
        for contact in self.alert_contacts:
            _contact("callout.alert_contacts", contact)
        for entry in self.category_skills:
            category, _, skill = entry.partition("=")
            if not category.strip() or not skill.strip():
                raise SettingsError(f"callout.category_skills 应为「类别=技能」/ expected category=skill: "
                                    f"{entry!r}")


@dataclass(frozen=True)
class FollowupSettings:
    """回访: the service phones residents back after a repair and asks how it went."""

    line: str = ""  # the [[lines]] name that dials residents; empty: no automated follow-up calls
    delay_hours: int = 24  # after 完成 (the next day) ...
    emergency_delay_hours: int = 4  # ... and sooner after an emergency
    calling_hours: tuple[str, ...] = ("09:00-12:00", "14:00-20:00")  # site time; never at lunch or night
    # No calls on these days unless the resident agreed: ISO weekdays ("7" = Sunday) and dates ("2026-10-01").
    rest_days: tuple[str, ...] = ()
    max_attempts: int = 3  # calls without an answer before 回访失败 (a clerk calls by hand)
    retry_minutes: int = 120  # spacing of those calls
    max_calls: int = 2  # follow-up calls at the same time (outbound channels of the line they take)
    # An unhappy follow-up is a complaint (core.complaints): the manager on callout.alert_contacts is
    # phoned if nobody acted within this many minutes of calling hours ...
    complaint_minutes: int = 60
    # ... and it must be handled within this many hours (003 §3.3: 24 小时内进行初步处理).
    complaint_due_hours: int = 24

    def __post_init__(self) -> None:
        self.windows()  # each of these raises a SettingsError naming the bad entry
        if len(self.rest_weekdays()) == 7:
            raise SettingsError("followup.rest_days 不能包含一周的每一天 / would never call anyone")
        for name in ("delay_hours", "emergency_delay_hours"):
            if getattr(self, name) < 0:
                raise SettingsError(f"followup.{name} 不能为负数 / must not be negative")
        for name in ("max_attempts", "retry_minutes", "max_calls", "complaint_minutes", "complaint_due_hours"):
            if getattr(self, name) < 1:
                raise SettingsError(f"followup.{name} 至少为 1 / must be at least 1")

    def windows(self) -> tuple[tuple[time, time], ...]:
        """The calling hours as (start, end) pairs in the site's time, earliest first."""
        return _windows("followup.calling_hours", self.calling_hours)

    def rest_weekdays(self) -> frozenset[int]:
        return frozenset(int(day) for day in self._rest_days() if isinstance(day, int))

    def rest_dates(self) -> frozenset[date]:
        return frozenset(day for day in self._rest_days() if isinstance(day, date))

    def _rest_days(self) -> list[int | date]:
        days: list[int | date] = []
        for entry in self.rest_days:
            text = entry.strip()
            try:
                days.append(int(text) if re.fullmatch(r"[1-7]", text) else date.fromisoformat(text))
            except ValueError:
                raise SettingsError(f"followup.rest_days 应为星期（1-7，7=周日）或日期（2026-10-01）/ "
                                    f"expected an ISO weekday or a date: {entry!r}") from None
        return days


@dataclass(frozen=True)
class RecordingsSettings:
    # Call recordings are deleted this long after the call (personal data), and the call records'
    # transcripts and phone numbers are cleared (their times, lines and outcomes stay for the counts).
    keep_days: int = 30
    # Empty: data_dir/recordings. Several nodes must all reach the same directory (a shared file
    # system): the database keeps each recording's path relative to it.
    directory: str = ""

    def __post_init__(self) -> None:
        if self.keep_days < 1:
            raise SettingsError("recordings.keep_days 至少为 1 / must be at least 1")


@dataclass(frozen=True)
class SchedulerSettings:
    # The scheduled jobs (follow-up calls, the 17:00 list, recording clean-up) run on one node at a
    # time, the holder of a lease in the database; false: this node never runs them.
    owner: bool = True


LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


@dataclass(frozen=True)
class LogSettings:
    """What goes to standard error: readable lines, or one JSON object a line for a log collector."""

    format: str = "text"
    level: str = "INFO"

    def __post_init__(self) -> None:
        if self.format not in LOG_FORMATS:
            raise SettingsError(f"log.format 应为 {' 或 '.join(LOG_FORMATS)} / must be one of {LOG_FORMATS}: "
                                f"{self.format!r}")
        if self.level.upper() not in LOG_LEVELS:
            raise SettingsError(f"log.level 应为 / must be one of {LOG_LEVELS}: {self.level!r}")


@dataclass(frozen=True)
class AlertSettings:
    """Alerts to the managers' group chat: a 企业微信 or 钉钉 group robot's webhook."""

    webhook_url: str = ""  # empty: no group-chat alerts (the URL holds the robot's key: keep it in the environment)
    webhook_secret: str = ""  # 钉钉 robots with 加签: the SEC... secret; requests are then signed
    line_down_minutes: int = 2  # a line down this long is alerted
    no_owner_minutes: int = 5  # the scheduled jobs without an owner this long are alerted
    max_attempts: int = 10  # sends of one alert before giving up (each failure logged)
    retry_seconds: float = 5.0  # the first retry's wait; it doubles each time, at most 5 minutes

    def __post_init__(self) -> None:
        if self.webhook_url and not re.match(r"https?://[^/\s]+", self.webhook_url):
            raise SettingsError("alerts.webhook_url 应为 http(s):// 地址 / must be an http(s) URL")
        for name in ("line_down_minutes", "no_owner_minutes", "max_attempts"):
            if getattr(self, name) < 1:
                raise SettingsError(f"alerts.{name} 至少为 1 / must be at least 1")
        if self.retry_seconds <= 0:
            raise SettingsError("alerts.retry_seconds 应为正数 / must be positive")


@dataclass(frozen=True)
class TriageSettings:
    """How a caller's words are read (core/triage)."""

    # A TOML file of extra words in the shape of core/triage/words.toml, added to the packaged lists.
    words_file: str = ""
    # A lift that is stopped or stuck with nobody inside is 紧急 (docs/process.md lists 电梯故障 among
    # the emergencies); false makes it a normal repair. People trapped (困人) are always an emergency.
    lift_fault_is_emergency: bool = True

    def __post_init__(self) -> None:
        if self.words_file and not Path(self.words_file).expanduser().is_file():
            raise SettingsError(f"triage.words_file 文件不存在 / word file not found: {self.words_file}")


@dataclass(frozen=True)
class ClusterSettings:
    """How the nodes sharing one database keep track of each other (README「Several processes」)."""

    heartbeat_seconds: float = 10.0  # each node says it is alive, and renews the scheduler's lease, this often
    # The scheduler's lease lasts this long unrenewed: a dead holder's jobs move to another node
    # within lease_seconds + heartbeat_seconds.
    lease_seconds: float = 30.0
    # A node silent this long is gone: a surviving node closes its calls in progress (node_lost).
    node_lost_seconds: float = 90.0

    def __post_init__(self) -> None:
        if self.heartbeat_seconds <= 0:
            raise SettingsError("cluster.heartbeat_seconds 应为正数 / must be positive")
        if self.lease_seconds < 2 * self.heartbeat_seconds:
            raise SettingsError("cluster.lease_seconds 至少为 heartbeat_seconds 的两倍 / must be at least "
                                "twice heartbeat_seconds, or the holder loses its lease between two renewals")
        if self.node_lost_seconds < 3 * self.heartbeat_seconds:
            raise SettingsError("cluster.node_lost_seconds 至少为 heartbeat_seconds 的三倍 / must be at least "
                                "three times heartbeat_seconds, or a slow node counts as dead")


NODE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@dataclass(frozen=True)
class Settings:
    data_dir: Path = field(default_factory=default_data_dir)
    # This process among the nodes sharing the database: on its call records, in its log lines.
    node_name: str = field(default_factory=default_node_name)
    timezone: str = "Asia/Shanghai"
    property_name: str = "物业服务中心"
    web: WebSettings = field(default_factory=WebSettings)
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    sla: SlaSettings = field(default_factory=SlaSettings)
    asr: AsrSettings = field(default_factory=AsrSettings)
    hotline: HotlineSettings = field(default_factory=HotlineSettings)
    callout: CalloutSettings = field(default_factory=CalloutSettings)
    followup: FollowupSettings = field(default_factory=FollowupSettings)
    recordings: RecordingsSettings = field(default_factory=RecordingsSettings)
    scheduler: SchedulerSettings = field(default_factory=SchedulerSettings)
    triage: TriageSettings = field(default_factory=TriageSettings)
    log: LogSettings = field(default_factory=LogSettings)
    alerts: AlertSettings = field(default_factory=AlertSettings)
    cluster: ClusterSettings = field(default_factory=ClusterSettings)
    # [[lines]] tables, read by callcenter.ivr; each key overridable by CALLCENTER_LINES_<NAME>_<KEY>
    # (that is where a line's password belongs).
    lines: tuple[dict[str, Any], ...] = ()

    def __post_init__(self) -> None:
        if not NODE_NAME.fullmatch(self.node_name):
            raise SettingsError(f"node_name 应为字母、数字、点、横线或下划线（最多 64 个）/ expected letters, digits, "
                                f"'.', '-' or '_' (at most 64): {self.node_name!r}")

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def database_url(self) -> str:
        return self.database.url or f"sqlite:///{self.data_dir / 'callcenter.db'}"

    @property
    def recordings_dir(self) -> Path:
        return Path(self.recordings.directory).expanduser() if self.recordings.directory else self.data_dir / "recordings"


def load_settings(
    path: str | Path | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Defaults, then the TOML file (``path`` or ``CALLCENTER_CONFIG``), then the environment."""
    environ = os.environ if environ is None else environ
    path = path or environ.get(ENV_PREFIX + "CONFIG")
    file_values: dict[str, Any] = {}
    if path:
        try:
            file_values = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise SettingsError(f"配置文件不存在 / config file not found: {path}") from None
        except tomllib.TOMLDecodeError as error:
            raise SettingsError(f"配置文件格式错误 / invalid TOML in {path}: {error}") from None
    lines = file_values.pop("lines", [])
    settings = _build(Settings, file_values, environ, prefix=ENV_PREFIX, where="")
    return replace(settings, lines=_lines(lines, environ))


def _lines(tables: Any, environ: Mapping[str, str]) -> tuple[dict[str, Any], ...]:
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise SettingsError("lines 应为 [[lines]] 表的数组 / lines must be an array of tables ([[lines]])")
    lines = []
    for table in tables:
        name = table.get("name")
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_]+", name):
            raise SettingsError(f"每条线路需要名称（字母数字） / every [[lines]] needs a name of letters and digits: {table}")
        prefix = f"{ENV_PREFIX}LINES_{name.upper()}_"
        line = dict(table)
        for variable, value in environ.items():
            if variable.startswith(prefix):
                line[variable[len(prefix):].lower()] = value
        lines.append(line)
    names = [line["name"] for line in lines]
    if len(set(names)) != len(names):
        raise SettingsError(f"线路名称重复 / duplicate line names: {names}")
    return tuple(lines)


def _build(cls: type, values: dict[str, Any], environ: Mapping[str, str], prefix: str, where: str):
    known = {f.name: f for f in fields(cls)}
    unknown = set(values) - set(known)
    if unknown:
        raise SettingsError(f"未知配置项 / unknown setting: {', '.join(where + k for k in sorted(unknown))}")
    built = cls()
    changes: dict[str, Any] = {}
    for name in known:
        current = getattr(built, name)
        env_name = prefix + name.upper()
        if is_dataclass(current):
            section = values.get(name, {})
            if not isinstance(section, dict):
                raise SettingsError(f"配置项 {where}{name} 应为表 / must be a table")
            changes[name] = _build(type(current), section, environ, env_name + "_", f"{where}{name}.")
            continue
        if name in values:
            changes[name] = _coerce(values[name], current, where + name)
        if env_name in environ:
            changes[name] = _coerce(environ[env_name], current, env_name, from_env=True)
    return replace(built, **changes)


def _coerce(value: Any, default: Any, name: str, from_env: bool = False) -> Any:
    """Give a file or environment value the type of the default it replaces."""
    try:
        if isinstance(default, bool):
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in {"1", "true", "yes", "on"}:
                return True
            if text in {"0", "false", "no", "off"}:
                return False
            raise ValueError(value)
        if isinstance(default, Path):
            return Path(value).expanduser()
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            return float(value)
        if isinstance(default, (list, tuple)):
            if from_env:
                text = value.strip()
                value = json.loads(text) if text.startswith("[") else [v.strip() for v in text.split(",") if v.strip()]
            return type(default)(value)
        if isinstance(default, str):
            if not isinstance(value, str):
                raise ValueError(value)
            return value
    except (ValueError, TypeError, json.JSONDecodeError):
        raise SettingsError(f"配置项 {name} 的值无效 / invalid value {value!r}") from None
    return value
