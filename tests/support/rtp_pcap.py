"""Make a pcap of RTP audio and RFC 4733 digits for SIPp's ``play_pcap_audio``, from a WAV.

    python tests/support/rtp_pcap.py speech.wav speech.pcap --codec PCMA --digits 12# --digits-at 0.5

The WAV must be 8 kHz mono 16-bit (``sox in.wav -r 8000 -c 1 -b 16 out.wav``). Addresses and ports
in the pcap are placeholders (127.0.0.1): SIPp sends the payloads to the call's media address.
Packets are 20 ms apart, as SIPp replays them at their capture times. Digits are 100 ms events
(RFC 4733 §2.5: start packet with the marker bit, updates, then the end packet three times)
with 100 ms between them, sent in place of audio, whose timestamps keep running.
"""

from __future__ import annotations

import argparse
import struct
import sys
import wave
from pathlib import Path

if __package__ in (None, ""):  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from callcenter.ivr.media import CODECS, EVENT_KEYS, FRAME_BYTES, FRAME_SAMPLES, RtpPacket  # noqa: E402

EVENT_PAYLOAD_TYPE = 101
SSRC = 0x5EED1234


def rtp_stream(pcm: bytes, codec: str = "PCMU", digits: str = "", digits_at: float | None = None
               ) -> list[tuple[float, bytes]]:
    """(send time in seconds, RTP packet) for the audio with the digits inserted at ``digits_at``
    seconds (default: after the audio)."""
    encode = CODECS[codec].encode
    payload_type = CODECS[codec].payload_type
    frames = [pcm[i:i + FRAME_BYTES].ljust(FRAME_BYTES, b"\0") for i in range(0, len(pcm), FRAME_BYTES)]
    insert_at = len(frames) if digits_at is None else min(len(frames), round(digits_at / 0.02))
    packets: list[tuple[float, bytes]] = []
    sequence, timestamp, slot = 1, 1000, 0

    def emit(packet_type: int, packet_timestamp: int, payload: bytes, marker: bool = False) -> None:
        nonlocal sequence, slot
        packet = RtpPacket(packet_type, sequence & 0xFFFF, packet_timestamp, SSRC, payload, marker)
        packets.append((slot * 0.02, packet.to_bytes()))
        sequence += 1
        slot += 1

    for index, frame in enumerate(frames + [None]):
        if index == insert_at:
            for key in digits:
                event = EVENT_KEYS.index(key)
                start = timestamp
                for step in range(1, 6):  # 5 packets x 20 ms = 100 ms of tone
                    emit(EVENT_PAYLOAD_TYPE, start, struct.pack("!BBH", event, 10, step * FRAME_SAMPLES), step == 1)
                    timestamp += FRAME_SAMPLES
                for _ in range(3):  # the end packet, three times (RFC 4733 §2.5.1.4)
                    packets.append((slot * 0.02, RtpPacket(EVENT_PAYLOAD_TYPE, sequence & 0xFFFF, start, SSRC,
                                                           struct.pack("!BBH", event, 0x80 | 10, 800)).to_bytes()))
                    sequence += 1
                slot += 5  # 100 ms pause before the next digit or the audio
                timestamp += 5 * FRAME_SAMPLES
        if frame is not None:
            emit(payload_type, timestamp, encode(frame))
            timestamp += FRAME_SAMPLES
    return packets


def _checksum(header: bytes) -> int:
    total = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def pcap_bytes(packets: list[tuple[float, bytes]], source_port: int = 6000, destination_port: int = 6002) -> bytes:
    """Classic libpcap file, Ethernet link type, IPv4/UDP from and to 127.0.0.1 (UDP checksum 0)."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for identifier, (at, payload) in enumerate(packets):
        udp = struct.pack("!HHHH", source_port, destination_port, 8 + len(payload), 0) + payload
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), identifier & 0xFFFF, 0, 64, 17, 0,
                         bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1]))
        ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
        frame = bytes(6) + bytes(6) + b"\x08\x00" + ip + udp
        seconds, micros = int(at), round((at - int(at)) * 1e6)
        out.append(struct.pack("<IIII", 1_000_000_000 + seconds, micros, len(frame), len(frame)) + frame)
    return b"".join(out)


def read_pcm(path: Path) -> bytes:
    with wave.open(str(path), "rb") as wav:
        if (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) != (8000, 1, 2):
            raise SystemExit(f"{path}: need 8 kHz mono 16-bit (sox {path} -r 8000 -c 1 -b 16 out.wav)")
        return wav.readframes(wav.getnframes())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("wav", type=Path)
    parser.add_argument("pcap", type=Path)
    parser.add_argument("--codec", choices=sorted(CODECS), default="PCMU")
    parser.add_argument("--digits", default="", help="RFC 4733 digits to send, e.g. 12#")
    parser.add_argument("--digits-at", type=float, default=None, help="seconds into the audio (default: after it)")
    args = parser.parse_args(argv)
    packets = rtp_stream(read_pcm(args.wav), args.codec, args.digits, args.digits_at)
    args.pcap.write_bytes(pcap_bytes(packets))
    print(f"{args.pcap}: {len(packets)} RTP packets, {packets[-1][0] + 0.02:.2f} s")


if __name__ == "__main__":
    main()
