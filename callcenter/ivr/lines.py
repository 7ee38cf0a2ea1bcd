"""The hotline's SIP lines as the call flows see them: a ``Line`` per configured line, a ``Call`` per call.

    line = Line(LineConfig("main", mode="trunk", listen="127.0.0.1:5070", allow=["127.0.0.1:5060"]),
                on_call=hotline_flow)
    line.start()                      # raises the first failure (RegistrationError ...); keeps trying
    call = line.dial("13800138000", timeout=30)   # outbound: returns once answered, else DialError

The flows import from here, never from ``callcenter/sip/`` (our SIP user agent, which this wraps).
The one boundary between threads: SIP and RTP threads (``callcenter/sip/``) never run flow code.
They only call a Call's listener methods (``on_frame``, ``on_digit``, ``on_ended``), which put data
into that Call's queues, its recording and its prompt's barge-in detector, and return. A flow is a
plain blocking function on its call's own thread: ``on_call`` runs on a new thread named
"call <call-id>" per inbound call; an outbound call belongs to the thread that called ``dial``.
Nothing here touches asyncio: async code calls ``start``/``stop``/``dial`` via ``asyncio.to_thread``,
and flows report to the web app only through the notifier that app.py hands them.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from callcenter.ivr.media import CODECS, BargeInDetector, PlayOutcome, PromptPlayer, WavRecorder
from callcenter.metrics import NO_METRICS, Metrics
from callcenter.sip.agent import MAX_RETRY_INTERVAL, UserAgent
from callcenter.sip.dialog import CallState, Invitation, RefusedCall, SipCall
from callcenter.sip.errors import CallEnded, DialError, RegistrationError, SipError
from callcenter.sip.uri import parse_host_port

__all__ = ["Call", "CallEnded", "DialError", "Invitation", "Line", "LineConfig", "PlayOutcome", "RefusedCall",
           "RegistrationError", "SipError"]

log = logging.getLogger("callcenter.ivr")

FRAME_BUFFER = 500  # caller frames kept for a flow that is not reading: 10 s


@dataclass(frozen=True)
class LineConfig:
    """One SIP line. ``register``: REGISTER ``user``/``password`` at ``server`` ("host:port") and take
    calls from it. ``trunk``: no REGISTER; take INVITEs only from ``allow`` ("ip", "ip:port" or a
    host name), dial through ``server`` if given. ``listen`` must be one interface address, never
    0.0.0.0. RTP is taken only from the peer's SDP address, or with ``symmetric_rtp`` from the first
    address of the peer's host that sends (callers behind NAT); ``rtp_timeout_seconds`` without any
    ends the call (outcome ``media_timeout``); a recording stops after ``max_recording_minutes``."""

    name: str
    mode: str = "register"
    listen: str = "127.0.0.1:5070"
    server: str | None = None
    user: str | None = None
    password: str | None = None
    allow: Sequence[str] = ()
    max_calls: int = 10
    rtp_ports: tuple[int, int] = (20000, 20999)
    codecs: Sequence[str] = ("PCMU", "PCMA")
    register_expires: int = 300
    keepalive_interval: float = 30.0  # ask the registrar for our binding; 0 = off (refresh only)
    retry_interval: float = 30.0  # the longest wait between two tries to bring the line up (at most 30)
    symmetric_rtp: bool = True
    rtp_timeout_seconds: float = 30.0  # 0 = never
    max_recording_minutes: float = 120.0
    barge_in_rms: float = 1300.0
    barge_in_ms: int = 240

    def __post_init__(self) -> None:
        object.__setattr__(self, "allow", tuple(self.allow))
        object.__setattr__(self, "codecs", tuple(self.codecs))
        problems = []
        if self.mode not in ("register", "trunk"):
            problems.append(f"mode must be 'register' or 'trunk', not {self.mode!r}")
        try:
            host, _ = parse_host_port(self.listen)
            if host in ("", "0.0.0.0", "::", "*"):
                problems.append(f"listen must be one interface address (it goes into Via, Contact and SDP), "
                                f"not {host!r}")
        except ValueError as error:
            problems.append(f"listen: {error}")
        for key, value, default in [("server", self.server, 5060)] + [("allow", a, 0) for a in self.allow]:
            if value:
                try:
                    parse_host_port(value, default_port=default)
                except ValueError as error:
                    problems.append(f"{key}: {error}")
        if self.mode == "register" and not (self.server and self.user):
            problems.append("register mode needs server and user")
        if self.mode == "trunk" and not self.allow:
            problems.append("trunk mode needs allow: the addresses the PBX sends INVITEs from")
        if self.max_calls < 1:
            problems.append("max_calls must be at least 1")
        low, high = self.rtp_ports
        if not 1024 <= low <= high <= 65535:
            problems.append(f"rtp_ports {self.rtp_ports} is not a range within 1024-65535")
        unknown = [name for name in self.codecs if name not in CODECS]
        if unknown or not self.codecs:
            problems.append(f"codecs must be among {sorted(CODECS)}, not {list(self.codecs)}")
        if not 0 < self.retry_interval <= MAX_RETRY_INTERVAL:
            problems.append(f"retry_interval must be more than 0 and at most {MAX_RETRY_INTERVAL:g} s")
        if self.rtp_timeout_seconds < 0 or self.max_recording_minutes <= 0 or self.keepalive_interval < 0:
            problems.append("rtp_timeout_seconds and keepalive_interval must not be negative, "
                            "max_recording_minutes must be positive")
        if problems:
            raise ValueError(f"line {self.name}: " + "; ".join(problems))


class Line:
    def __init__(self, config: LineConfig, on_call: Callable[[Call], None] | None = None,
                 on_refused: Callable[[RefusedCall], None] = lambda refused: None,
                 admit: Callable[[Invitation], int | None] | None = None, metrics: Metrics = NO_METRICS):
        """``on_refused`` hears of every INVITE the line refused before a flow ran (busy, codec, no
        thread), from the SIP thread: it must only queue. ``admit(invitation)`` is asked before a new
        INVITE rings (on the SIP thread: answer at once): a SIP code refuses it (503 when this node
        cannot take more, so a dispatcher tries the next; the owner counts those itself), None takes it."""
        self.config = config
        self.on_call = on_call
        self.on_refused = on_refused
        self.metrics = metrics  # call set-up times (callcenter_call_setup_seconds)
        server = parse_host_port(config.server) if config.server else None
        allow = [parse_host_port(entry, default_port=0) for entry in config.allow]
        self._agent = UserAgent(
            config.name, parse_host_port(config.listen), user=config.user or config.name, mode=config.mode,
            server=server, password=config.password, allow=[(ip, port or None) for ip, port in allow],
            max_calls=config.max_calls, rtp_ports=config.rtp_ports, codecs=[CODECS[name] for name in config.codecs],
            register_expires=config.register_expires, keepalive_interval=config.keepalive_interval,
            retry_interval=config.retry_interval, symmetric_rtp=config.symmetric_rtp,
            rtp_timeout=config.rtp_timeout_seconds, on_incoming=self._incoming, on_refused=on_refused, admit=admit)
        self._flows: dict[str, threading.Thread] = {}

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def address(self) -> tuple[str, int]:
        return self._agent.address

    @property
    def bound_address(self) -> tuple[str, int]:
        """The address the SIP socket really bound (the configured one; never 0.0.0.0)."""
        return self._agent.endpoint.socket_address

    @property
    def up(self) -> bool:
        """Registered (register mode) or listening (trunk): able to take and make calls."""
        return self._agent.current_status().up

    @property
    def status(self) -> str:
        """For people: "registered", "registering", "listening", "down" or "starting"."""
        return self._agent.current_status().state

    def health(self) -> dict:
        """The line for /api/health: state, since when, the last error while not up, calls and the
        datagrams turned away (``hostile_packets``, by reason in ``turned_away``)."""
        status = self._agent.current_status()
        return {"state": status.state, "mode": self.config.mode, "since": status.since.isoformat(timespec="seconds"),
                "error": status.error or None, "calls": len(self._agent.calls),
                "hostile_packets": self.hostile_packets, "turned_away": self._agent.guard.counts}

    @property
    def hostile_packets(self) -> int:
        """Datagrams (SIP and RTP) this line turned away since it started."""
        return self._agent.guard.total

    @property
    def registered(self) -> bool:
        """Register mode: the registrar accepted our last REGISTER. Trunk mode: always True."""
        registration = self._agent.registration
        return registration.registered.is_set() if registration else True

    @property
    def calls(self) -> list[Call]:
        return [session.listener for session in self._agent.calls if isinstance(session.listener, Call)]

    def start(self, timeout: float = 5.0) -> None:
        """Listen, and in register mode register. Raises the first failure (SipError: cannot listen;
        RegistrationError: wrong password, no answer ...), but the line keeps trying by itself."""
        self._agent.start(timeout)

    def begin(self) -> None:
        """``start`` without waiting: the line comes up (and stays up) on its own thread."""
        self._agent.begin()

    def first_outcome(self, timeout: float) -> Exception | None:
        """How the line's first try to come up went: its failure, or None (up, or still trying)."""
        return self._agent.first_outcome(timeout)

    def stop(self) -> None:
        """Hang up every call, unregister, close the sockets; wait briefly for the flows to return."""
        self._agent.stop()
        for thread in list(self._flows.values()):
            thread.join(2)

    def dial(self, target: str, timeout: float = 30.0, cancel: threading.Event | None = None) -> Call:
        """Call a number (through the line's server) or a sip: URI; return once answered.
        Raises DialError, whatever went wrong, with the SIP code when there was one: busy (486), no
        answer within ``timeout`` (408), called off by setting ``cancel`` while it rings (487); a
        target that does not parse or resolve fails at once."""
        invited = time.monotonic()
        try:
            session = self._agent.dial(target, timeout, lambda session: Call(self, session), cancel)
            self.metrics.call_setup.labels("outbound").observe(time.monotonic() - invited)
        except DialError:
            raise
        except Exception as error:
            log.exception("line %s: dialing %s failed", self.name, target)
            raise DialError(f"line {self.name}: dialing {target} failed: {error}") from error
        call = session.listener  # the Call made above
        if not isinstance(call, Call):
            raise DialError(f"line {self.name}: dialing {target}: the answered call has no Call")
        return call

    def _incoming(self, session: SipCall) -> None:
        call = Call(self, session)
        session.listener = call
        thread = threading.Thread(target=self._run_flow, args=(call,), name=f"call {call.call_id}", daemon=True)
        self._flows[call.call_id] = thread
        try:
            thread.start()
        except RuntimeError as error:  # no thread to be had: say so to the caller rather than ring forever
            self._flows.pop(call.call_id, None)
            log.error("call %s: cannot start its flow (%s); 503", call.call_id, error)
            session.reject(503)
            self.on_refused(RefusedCall(call.call_id, call.caller, call.called, 503, f"no thread for the flow: {error}"))

    def _run_flow(self, call: Call) -> None:
        try:
            if self.on_call is None:
                call.reject(480)
            else:
                self.on_call(call)
        except CallEnded as error:
            log.info("call %s: flow stopped: %s", call.call_id, error)
        except Exception:
            log.exception("call %s: flow failed", call.call_id)
        finally:
            call.hangup()  # the flow owns the call: when it returns, the call is over
            self._flows.pop(call.call_id, None)


class Call:
    """One call, for the flow that runs it. Thread-safe; every method may block only the caller."""

    def __init__(self, line: Line, session: SipCall):
        self.line = line
        self._session = session
        self.ended = threading.Event()
        self._invited = time.monotonic()  # an inbound Call is made when its INVITE arrives
        self._lock = threading.Lock()
        self._frames_ready = threading.Condition(self._lock)
        self._frames: deque[bytes] = deque(maxlen=FRAME_BUFFER)
        self._digits: queue.Queue[str] = queue.Queue()
        self._player: PromptPlayer | None = None
        self._recorder: WavRecorder | None = None

    def __repr__(self) -> str:
        return f"<Call {self.call_id} {self.caller}->{self.called} {self.state}>"

    # ---- who and what

    @property
    def call_id(self) -> str:
        return self._session.call_id

    @property
    def caller(self) -> str:
        return self._session.caller

    @property
    def called(self) -> str:
        return self._session.called

    @property
    def direction(self) -> str:
        return self._session.direction

    @property
    def state(self) -> CallState:
        return self._session.state

    @property
    def codec(self) -> str | None:
        return self._session.codec.name if self._session.codec else None

    @property
    def media_address(self) -> tuple[str, int] | None:
        """Our RTP socket's address once answered."""
        stream = self._session.stream
        return stream.local_address if stream and not self.ended.is_set() else None

    @property
    def is_active(self) -> bool:
        return not self.ended.is_set()

    @property
    def end_reason(self) -> str:
        return self._session.end_reason

    @property
    def end_outcome(self) -> str | None:
        """How the SIP side ended the call when that is an outcome of its own: "media_timeout" (no
        RTP for ``rtp_timeout_seconds``); None when it ended the ordinary way."""
        return self._session.end_outcome

    # ---- call control

    def answer(self) -> None:
        """200 OK now; CallEnded if the caller already cancelled."""
        self._session.answer()
        self.line.metrics.call_setup.labels("inbound").observe(time.monotonic() - self._invited)

    def reject(self, code: int = 486) -> None:
        self._session.reject(code)

    def hangup(self) -> None:
        """BYE if answered, 480 if still ringing; nothing if already over."""
        self._session.hangup()

    # ---- audio out

    def play(self, pcm: bytes, barge_in: bool = False) -> PlayOutcome:
        """Play 8 kHz 16-bit mono PCM; returns when it has been sent ("done"), when the caller
        pressed a key or spoke over it and ``barge_in`` was allowed ("barged_in": the prompt stops
        at once; a key stays readable with ``dtmf``), or when the call ended ("hung_up").
        A key pressed before the prompt starts also barges in (type-ahead)."""
        stream = self._session.stream
        if self.ended.is_set():
            return PlayOutcome.HUNG_UP
        if stream is None:
            raise RuntimeError(f"call {self.call_id}: answer() before play()")
        config = self.line.config
        player = PromptPlayer(pcm, barge_in, BargeInDetector(config.barge_in_rms, config.barge_in_ms))
        if barge_in and not self._digits.empty():
            return PlayOutcome.BARGED_IN
        with self._lock:
            self._player = player
        try:
            for frame in player.frames():
                while not stream.send_frame(frame, timeout=0.1):
                    if self.ended.is_set() or player.barged_in:
                        break
                if self.ended.is_set():
                    return PlayOutcome.HUNG_UP
            while not player.barged_in and not stream.outgoing.empty():  # the last frames go out
                if self.ended.wait(0.02):
                    return PlayOutcome.HUNG_UP
            if player.barged_in:
                stream.flush()
                log.info("call %s: caller barged in", self.call_id)
                return PlayOutcome.BARGED_IN
            return PlayOutcome.HUNG_UP if self.ended.is_set() else PlayOutcome.DONE
        finally:
            with self._lock:
                self._player = None

    def send_frame(self, pcm: bytes) -> bool:
        """Send one 20 ms frame of 8 kHz 16-bit PCM as it comes, e.g. another call's voice in a bridge
        (``play`` is for whole prompts). Waits at most 0.1 s for room behind the frames already queued,
        so a burst of late packets is smoothed, not lost; False once the call is over."""
        stream = self._session.stream
        if self.ended.is_set() or stream is None:
            return False
        stream.send_frame(pcm, timeout=0.1)
        return True

    # ---- audio and keys in

    def frames(self, timeout: float | None = None) -> Iterator[bytes]:
        """The caller's audio as 20 ms frames of 8 kHz 16-bit mono PCM, oldest first (up to 10 s
        are kept while nobody reads), until the call ends or ``timeout`` seconds pass."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._frames_ready:
                while not self._frames and not self.ended.is_set():
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return
                    self._frames_ready.wait(remaining)
                if not self._frames:
                    return
                frame = self._frames.popleft()
            yield frame
            if deadline is not None and time.monotonic() >= deadline:
                return

    def flush_frames(self) -> None:
        """Forget buffered caller audio (say, what was said over a prompt that allowed no barge-in)."""
        with self._lock:
            self._frames.clear()

    def dtmf(self) -> str:
        """The keys pressed so far and not yet read, without waiting."""
        keys = []
        while True:
            try:
                keys.append(self._digits.get_nowait())
            except queue.Empty:
                return "".join(keys)

    def wait_dtmf(self, timeout: float) -> str | None:
        """The next key, or None after ``timeout`` seconds or when the call ends."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self._digits.get(timeout=min(0.1, max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                if self.ended.is_set() or time.monotonic() >= deadline:
                    return None

    # ---- recording

    def start_recording(self, path: str | Path) -> None:
        """Write the caller's audio from now on to an 8 kHz mono 16-bit WAV; the file is closed,
        complete, when the call ends (whoever hangs up) or ``stop_recording`` is called."""
        recorder = WavRecorder(path)
        with self._lock:
            if self.ended.is_set():
                recorder.close()
                raise CallEnded(f"call {self.call_id}: cannot record, {self.end_reason}")
            previous, self._recorder = self._recorder, recorder
        if previous:
            previous.close()
        log.info("call %s: recording to %s", self.call_id, path)

    def stop_recording(self) -> float:
        """Close the recording; its duration in seconds (0 if none)."""
        with self._lock:
            recorder, self._recorder = self._recorder, None
        if recorder is None:
            return 0.0
        recorder.close()
        log.info("call %s: recording %s closed (%.2f s)", self.call_id, recorder.path, recorder.duration)
        return recorder.duration

    # ---- listener: called from SIP and RTP threads; only queues, never blocks

    def on_frame(self, pcm: bytes) -> None:
        with self._lock:
            self._frames.append(pcm)
            self._frames_ready.notify_all()
            if self._player:
                self._player.hear(pcm)
            if self._recorder:
                try:
                    self._recorder.write(pcm)
                except (OSError, ValueError) as error:
                    log.error("call %s: recording %s failed, stopped: %s", self.call_id, self._recorder.path, error)
                    self._recorder = None
                    return
                if self._recorder.duration >= 60 * self.line.config.max_recording_minutes:
                    log.warning("call %s: recording %s reached %g minutes; the rest is not recorded", self.call_id,
                                self._recorder.path, self.line.config.max_recording_minutes)
                    self._recorder.close()
                    self._recorder = None

    def on_digit(self, key: str) -> None:
        self._digits.put(key)
        with self._lock:
            if self._player:
                self._player.key_pressed()

    def on_ended(self, reason: str) -> None:
        with self._lock:
            self.ended.set()
            self._frames_ready.notify_all()
        self.stop_recording()
