"""`callcenter kamailio-config`: Kamailio's dispatcher in front of several hotline nodes.

Writes a complete ``kamailio.cfg`` for Debian's kamailio 5.6 and the node list its dispatcher
module reads (``dispatcher.list``; the module takes destinations only from a file or a database).
What the configuration does, as Kamailio's dispatcher documents it (README.dispatcher):

- calls (INVITE) only from the allowed peers (the PBX or carrier trunk); anything else gets 403
  before Kamailio spends more on it, and in-dialog requests pass only from those peers or a node;
- ``ds_select_dst`` picks a node: round-robin (algorithm 4) or least-loaded (algorithm 10, the
  node with the fewest calls in progress as counted by the dispatcher itself);
- failover (dispatcher flag 2 and ``failure_route``): a node that sends no reply within
  ``FIRST_REPLY_MS`` is marked down and the call goes to the next node; 486 and 5xx (a full or
  failing node) pass the call to the next node too; every other answer is the node's own;
- full is not busy: an INVITE sent to a node while the dispatcher still has another node to try
  carries ``NEXT_NODE_HEADER`` (added per branch in ``branch_route``; the dispatcher keeps the
  nodes left to try in the XAVP ``_dsdst_``, the current one first, and ``ds_next_dst`` drops the
  current one). Only such an INVITE may be refused by a node whose recognisers are all busy (503);
  the last node tried takes the call anyway, in keypad-and-recording mode. The header is removed
  from what the PBX sends, so nobody outside can make a node refuse;
- every node is probed with OPTIONS every ``--probe-seconds`` (``ds_probing_mode`` 1): one that
  fails twice is left out, one that answers again is taken back;
- record-routing: the ACK, BYE and re-INVITEs of a call pass through here to the node that
  answered (and the node's BYE to the caller), whatever the dispatcher picks next.

Only the SIP signalling passes through Kamailio: the audio (RTP) goes straight between the caller
and the node, so each node's ``rtp_ports`` must be reachable from the PBX or carrier.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

ALGORITHMS = {"round-robin": 4, "least-loaded": 10}
FIRST_REPLY_MS = 2000  # a live node rings (180) at once; silence this long means it is down
SET = 1  # the dispatcher set of the hotline's nodes
# Added to an INVITE when the dispatcher has another node to try after this one: a full node may
# then answer 503 (callcenter/ivr/service.py: admission); without it the node takes the call anyway.
NEXT_NODE_HEADER = "X-Hotline-Next-Node"


class ConfigError(ValueError):
    """Options that cannot make a working configuration; the message says which."""


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def endpoint(text: str, what: str) -> Endpoint:
    """``IP:PORT`` as an Endpoint; ConfigError names ``what`` when it is not one."""
    host, _, port = text.rpartition(":")
    try:
        address = ipaddress.IPv4Address(host)
        number = int(port)
    except ValueError:
        raise ConfigError(f"{what} 应为 IPv4地址:端口 / expected IPv4-ADDRESS:PORT, got {text!r}") from None
    if address.is_unspecified:
        raise ConfigError(f"{what} 需要一个具体地址，不能是 0.0.0.0 / needs a real address, not 0.0.0.0")
    if not 1 <= number <= 65535:
        raise ConfigError(f"{what}: 端口无效 / bad port in {text!r}")
    return Endpoint(str(address), number)


def network(text: str) -> str:
    """An allowed peer: an address or a CIDR network, as ipops' ``is_in_subnet`` wants it."""
    try:
        return str(ipaddress.IPv4Network(text if "/" in text else f"{text}/32", strict=False))
    except ValueError:
        raise ConfigError(f"--allow 应为 IPv4 地址或网段 / expected an IPv4 address or network: {text!r}") from None


@dataclass(frozen=True)
class DispatcherConfig:
    listen: Endpoint
    nodes: tuple[Endpoint, ...]
    allow: tuple[str, ...]
    algorithm: str = "least-loaded"
    probe_seconds: int = 5

    def __post_init__(self) -> None:
        if not self.nodes:
            raise ConfigError("至少需要一个 --node / give at least one --node")
        if len(set(self.nodes)) != len(self.nodes):
            raise ConfigError("--node 重复 / a node is given twice")
        if self.listen in self.nodes:
            raise ConfigError("--listen 不能同时是 --node / the dispatcher cannot be its own node")
        if not self.allow:
            raise ConfigError("至少需要一个 --allow（PBX 或运营商中继的地址）/ give at least one --allow: "
                              "the PBX or carrier that sends the calls")
        if self.algorithm not in ALGORITHMS:
            raise ConfigError(f"--algorithm: {' / '.join(ALGORITHMS)}")
        if not 1 <= self.probe_seconds <= 300:
            raise ConfigError("--probe-seconds 应在 1 到 300 之间 / must be 1 to 300")

    def write(self, directory: Path, command: str = "") -> tuple[Path, Path]:
        """Write kamailio.cfg and dispatcher.list into ``directory``; their paths."""
        directory = directory.resolve()
        directory.mkdir(parents=True, exist_ok=True)
        node_list, config = directory / "dispatcher.list", directory / "kamailio.cfg"
        node_list.write_text(self.node_list(command), encoding="utf-8")
        config.write_text(self.kamailio_cfg(node_list, command), encoding="utf-8")
        return config, node_list

    def node_list(self, command: str = "") -> str:
        lines = [f"# The hotline's nodes for Kamailio's dispatcher, written by {command or 'callcenter kamailio-config'}",
                 "# set  destination  flags (8: probed with OPTIONS)  priority  attributes (duid: for least-loaded)"]
        lines += [f"{SET} sip:{node} 8 0 duid=node{number}" for number, node in enumerate(self.nodes, 1)]
        return "\n".join(lines) + "\n"

    def kamailio_cfg(self, node_list: Path, command: str = "") -> str:
        written = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        return TEMPLATE.format(
            written=written, command=command or "callcenter kamailio-config", listen=self.listen,
            host=self.listen.host, nodes=", ".join(map(str, self.nodes)), allow=",".join(self.allow),
            algorithm=self.algorithm, algorithm_number=ALGORITHMS[self.algorithm],
            least_loaded="#!define LEAST_LOADED" if self.algorithm == "least-loaded" else "# (round-robin)",
            node_list=node_list, probe_seconds=self.probe_seconds, first_reply_ms=FIRST_REPLY_MS, set=SET,
            next_node_header=NEXT_NODE_HEADER)


TEMPLATE = """\
#!KAMAILIO
#
# The repair hotline's SIP dispatcher, written by `callcenter kamailio-config` ({written}):
#   {command}
# Calls from the allowed peers ({allow}) go to the hotline nodes
# ({nodes}, listed in {node_list}), {algorithm}.
# A node that sends no reply within {first_reply_ms} ms, or answers 486 or 5xx, passes the call to the
# next node. Nodes are probed with OPTIONS every {probe_seconds} s. Only SIP passes here: the audio
# flows between the caller and the node. Check with `kamailio -c -f kamailio.cfg`.

{least_loaded}

####### Global parameters #########
debug=2
log_stderror=no
log_facility=LOG_LOCAL0
log_prefix="{{$mt $ci}} "
fork=yes
children=4
listen=udp:{listen}
disable_tcp=yes
disable_sctp=yes
auto_aliases=no
dns=no
rev_dns=no
dns_try_ipv6=no
use_dns_cache=no
sip_warning=no
server_header="Server: callcenter-dispatcher"
user_agent_header="User-Agent: callcenter-dispatcher"

####### Modules #########
loadmodule "tm.so"
loadmodule "tmx.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "xlog.so"
loadmodule "sanity.so"
loadmodule "ipops.so"
loadmodule "dispatcher.so"

# A live node rings at once: no reply at all within this long means it is down.
modparam("tm", "fr_timer", {first_reply_ms})
modparam("tm", "fr_inv_timer", 60000)

modparam("dispatcher", "list_file", "{node_list}")
modparam("dispatcher", "flags", 2)  # failover: keep the other nodes for ds_next_dst()
modparam("dispatcher", "ds_ping_method", "OPTIONS")
modparam("dispatcher", "ds_ping_from", "sip:dispatcher@{host}")
modparam("dispatcher", "ds_ping_interval", {probe_seconds})
modparam("dispatcher", "ds_probing_mode", 1)  # probe every node, not only those already down
modparam("dispatcher", "ds_probing_threshold", 2)  # two missed probes: down
modparam("dispatcher", "ds_inactive_threshold", 1)  # one answered probe: up again
#!ifdef LEAST_LOADED
modparam("dispatcher", "ds_hash_size", 9)  # calls counted per node (algorithm 10)
modparam("dispatcher", "ds_hash_initexpire", 70)  # a call never answered stops counting
modparam("dispatcher", "ds_hash_expire", 7200)  # a call whose BYE never came stops counting
#!define ALGORITHM "10"
#!else
#!define ALGORITHM "4"
#!endif

####### Routing #########
request_route {{
    if (!mf_process_maxfwd_header("10")) {{
        sl_send_reply("483", "Too Many Hops");
        exit;
    }}
    # The allow-list first: nothing else is done for a stranger's packet.
    if (!is_in_subnet("$si", "{allow}") && !ds_is_from_list("{set}", "2")) {{
        xlog("L_NOTICE", "refused $rm from $si:$sp: not an allowed peer\\n");
        if (!is_method("ACK")) {{
            sl_send_reply("403", "Forbidden");
        }}
        exit;
    }}
    if (!sanity_check()) {{
        xlog("L_NOTICE", "malformed $rm from $si:$sp dropped\\n");
        exit;
    }}
    if (is_method("CANCEL")) {{
        if (t_check_trans()) {{
#!ifdef LEAST_LOADED
            ds_load_update();
#!endif
            route(RELAY);
        }}
        exit;
    }}
    if (!is_method("ACK")) {{
        if (t_precheck_trans()) {{  # a retransmission of a request being handled
            t_check_trans();
            exit;
        }}
        t_check_trans();
    }}
    if (has_totag()) {{
        route(IN_DIALOG);
    }}
    if (is_method("OPTIONS") && uri == myself && $rU == $null) {{
        sl_send_reply("200", "Keepalive");
        exit;
    }}
    if (!is_method("INVITE")) {{
        sl_send_reply("405", "Method Not Allowed");
        exit;
    }}
    if (ds_is_from_list("{set}", "2")) {{
        sl_send_reply("403", "Nodes do not call through the dispatcher");
        exit;
    }}
    remove_hf("Route");
    remove_hf("{next_node_header}");  # ours to add: a caller's own would let it make full nodes refuse
    record_route();  # the rest of the call comes back through here, to the node that answers
    route(DISPATCH);
}}

route[IN_DIALOG] {{
    if (loose_route()) {{
#!ifdef LEAST_LOADED
        if (is_method("BYE")) {{
            ds_load_update();
        }}
#!endif
        route(RELAY);
    }}
    if (is_method("ACK")) {{
        if (t_check_trans()) {{
            t_relay();
        }}
        exit;
    }}
    sl_send_reply("404", "Not here");
    exit;
}}

route[DISPATCH] {{
    if (!ds_select_dst("{set}", ALGORITHM)) {{
        xlog("L_ERR", "call $ci from $fU ($si): no hotline node is up\\n");
        sl_send_reply("503", "No hotline node available");
        exit;
    }}
    xlog("L_INFO", "call $ci from $fU ($si) to node $du\\n");
    route(TO_NODE);
}}

route[TO_NODE] {{
    t_on_failure("NEXT_NODE");
    t_on_branch("MARK_NEXT_NODE");
#!ifdef LEAST_LOADED
    t_on_reply("NODE_REPLY");
#!endif
    route(RELAY);
}}

route[RELAY] {{
    if (!t_relay()) {{
        sl_reply_error();
    }}
    exit;
}}

#!ifdef LEAST_LOADED
onreply_route[NODE_REPLY] {{
    if (status =~ "^2[0-9][0-9]$") {{
        ds_load_update();  # the call counts on this node until its BYE
    }}
}}
#!endif

branch_route[MARK_NEXT_NODE] {{
    # Another node is left to try after this one: a full node may answer 503 (see the header's use).
    if ($xavp(_dsdst_[1]=>uri) != $null) {{
        append_hf("{next_node_header}: $xavp(_dsdst_[1]=>uri)\r\n");
    }}
}}

failure_route[NEXT_NODE] {{
    if (t_is_canceled()) {{
        exit;
    }}
    if (t_branch_timeout()) {{
        if (!t_branch_replied()) {{
            xlog("L_WARN", "call $ci: node $du sent no reply; marked down until it answers a probe\\n");
            ds_mark_dst("ip");
        }}
    }} else if (!t_check_status("^(486|5[0-9][0-9])$")) {{
#!ifdef LEAST_LOADED
        ds_load_unset();
#!endif
        exit;  # the node's own answer (e.g. 403, 488): the caller gets it
    }}
    if (ds_next_dst()) {{
        xlog("L_NOTICE", "call $ci: trying the next node $du\\n");
        route(TO_NODE);
    }}
#!ifdef LEAST_LOADED
    ds_load_unset();
#!endif
    xlog("L_ERR", "call $ci: no node took the call\\n");
}}
"""
