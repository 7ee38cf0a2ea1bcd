"""Our SIP user agent: the signalling and RTP of the hotline's lines (RFC 3261, 3264, 3550, 4733).

The call flows never import this package: they see ``callcenter/ivr/lines.py`` (Line, Call),
which wraps ``agent.UserAgent``. One module per concept, read in this order:

    errors        SipError, RegistrationError, DialError (with the outcome a failed dial counts as), CallEnded
    message       datagram caps, the first line alone (``start_line``), the linear parser, building messages
    uri           host:port, name-addr, sip: URIs; DNS with a time limit (``lookup`` is replaceable in tests)
    digest        RFC 2617 / 7616 / 8760 digest: MD5, SHA-256, SHA-512/256, -sess, userhash; 401 and 407
    sdp           the peer's audio stream (checked: IPv4, ports 1-65535) and our offer or answer
    transaction   timers and client transactions (retransmission over UDP)
    guard         what a line turns away: counted per reason, summarised once a minute, a small 403 budget
    transport     the socket, the receive loop, and the order in which a datagram is judged (cheapest first)
    rtp           one call's RTP stream: taken only from its peer (symmetric_rtp latching), silence timeout
    dialog        a call: its dialog (Call-ID, both tags, the peer's hosts), in-dialog requests, ending cleanly
    dialing       calling out: INVITE, digest, CANCEL, ACK with the 200's tag and route set
    registration  REGISTER, refresh, and asking the registrar whether it still has our binding
    agent         a line: its keeper thread (bind, resolve, register; back-off <= 30 s), routing of requests

Threads: per line one receive thread, one timer thread and one keeper thread; per call two RTP
threads. None runs call-flow code: they call a call's listener (lines.Call), which only queues.

pyVoIP
------
This package replaced ``ivr/sipfix.py``, a layer over pyVoIP 1.6.8 that kept only pyVoIP's
SIPMessage (whose parsing it overrode whole), SIPStatus (reason phrases) and RTPClient's receive
loop. That loop calls ``recv()``, which cannot say where a packet came from, so RTP could not be
checked against the peer; it also imports ``audioop``, which Python 3.13 removed. Nothing here
imports pyVoIP any more, and it is no longer a dependency. Each pyVoIP defect the old layer worked
around is still a test, as is each hardening of issue 12:

=====================  =================================================  ==========================================
pyVoIP 1.6.8 defect    what we do                                         test
=====================  =================================================  ==========================================
ack-to-tag (#272):     the dialog takes the 200's To (tag), Contact and   test_ivr_lines: test_ack_to_our_outbound_
ACK had a fresh To-    reversed Record-Route; the ACK is built from them  call_carries_the_200s_to_tag; test_sip_
tag, callee hung up    (dialog.SipCall.take_answer)                       messages: test_the_ack_to_our_answered_...
empty-header:          empty values are kept, folded lines joined,        test_ivr_lines: test_invite_with_an_empty_
"Supported:" dropped   compact names expanded (message.SipMessage)        header_is_answered; test_sip_messages:
the INVITE                                                                test_compact_folded_repeated_and_empty_...
8-bit-audio            G.711 payload decoded to 16-bit (ivr/media.py,     test_ivr_lines: test_caller_audio_reaches_
                       callcenter/pcm.py)                                 the_flow_as_16_bit_pcm
pcma-encode: μ-law     packets carry the negotiated codec                 test_ivr_lines: test_pcma_call_encodes_
sent as PCMA           (media.RtpAudioOutput)                             and_decodes_a_law
answer-sleep: 1 s      the owner's on_incoming runs at once               test_ivr_lines: test_answer_comes_without_
before every 200 OK                                                       the_one_second_sleep
trunk-mode: REGISTER   trunk lines never register, take INVITEs only      test_ivr_lines: test_trunk_line_never_
mandatory, replies to  from the allow-list, answer where requests came    registers_and_takes_calls_only_from_its_
the registrar          from (RFC 3581)                                    allow_list
407: call() hung       401 and 407 answered, for INVITE and REGISTER      test_ivr_lines: test_outbound_invite_
                       (digest.answer_challenge)                          answers_a_407_challenge; test_sip_agent:
                                                                          test_a_register_line_keeps_trying_...[407]
re-invite: a second    one stream per call, retargeted                    test_ivr_lines: test_reinvite_keeps_one_
RTP sender                                                                rtp_sender
cancel: answered       200 to the CANCEL, 487 to the INVITE, call over    test_ivr_lines: test_cancel_before_answer_
anyway                                                                    gets_487_and_the_call_is_never_answered
options: no reply      200 with Allow                                     test_ivr_lines: test_options_get_200
bye-route-set (#7)     in-dialog requests carry the route set (loose and  test_ivr_lines: test_bye_behind_a_record_
                       strict routers)                                    routing_proxy_carries_the_route_set;
                                                                          test_sip_messages: test_our_bye_for_a_...
bind-address: 0.0.0.0  only the configured address, for SIP and RTP       test_ivr_lines: test_sockets_bind_only_
                                                                          the_configured_address
wrong-password:        ``start`` raises the first failure (and the line   test_ivr_lines: test_wrong_password_
silent                 keeps trying)                                      raises_on_start
re-register: gave up   the keeper retries whatever failed, <= 30 s apart, test_sip_hostile_e2e: test_a_register_
after three failures   and asks the registrar for our binding             line_comes_up_when_the_pbx_does_...;
                                                                          test_sip_agent: test_a_registrar_that_...
max-calls: no limit    486 beyond max_calls (and a call record)           test_ivr_lines: test_busy_here_beyond_...
dtmf-repeat            one digit per RFC 4733 event                       test_ivr_lines: test_rfc2833_digits_...
rtp-memory: every      nothing kept per packet                            bench/ivr_calls.py (RSS per round)
packet logged
rtp-sequence: broke    wraps modulo 2^16                                  test_ivr_media: test_audio_output_packets_
at 65535                                                                  carry_the_codec_and_wrap_the_sequence
rtp-source: recv()     recvfrom, and only the peer's packets are taken    test_sip_agent: test_rtp_is_taken_only_
has no source          (rtp.RtpStream)                                    from_the_peer_...
audioop (gone in 3.13) our own G.191 G.711 (callcenter/pcm.py)            test_asr_audio
=====================  =================================================  ==========================================

Issue 12 (the network is hostile), each test failing on the old layer:

1. Cheap rejection: datagrams over 8 KB and messages over 100 header fields refused unread, the
   parser linear, strangers counted and not parsed (test_sip_agent: test_a_strangers_invite_flood_
   costs_..., test_oversized_datagrams_and_header_bombs_...; test_sip_messages: test_parsing_costs_
   linear_time_in_the_size; test_sip_hostile_e2e: test_a_scanner_flood_and_header_bombs_...).
2. Dialogs and media belong to their peer (test_sip_agent: test_a_strangers_bye_reinvite_info_and_
   cancel_..., test_symmetric_rtp_latches_..., test_a_call_without_rtp_ends_...; test_sip_hostile_e2e:
   test_a_stranger_with_the_call_id_...).
3. Every failure releases what it holds (test_sip_agent: test_a_contact_that_cannot_be_reached_...,
   test_a_bye_that_cannot_be_built_..., test_dialing_a_host_that_does_not_resolve_...; test_sip_fuzz;
   test_sip_hostile_e2e: test_a_caller_whose_contact_...; test_callout_e2e: test_an_engineer_whose_
   sip_address_does_not_resolve_...).
4. Lines come back by themselves (test_sip_agent: test_a_register_line_keeps_trying_...,
   test_a_line_that_cannot_bind_..., test_a_keeper_thread_that_dies_...; test_line_health).

Why our own code rather than a maintained library (read and measured for issue 12, on PyPI as of
this change; ``bench``-style figures from feeding each parser the same datagrams):

- sipmessage 0.7.1 (a parser only): ``Headers.add`` scans the header list per header, so 8,000
  header lines took 2.3 s (ours refuses them unread; its 1,000 took 37 ms); folded headers raise
  ValueError and a folded Record-Route loses its second route; no size caps.
- voip-utils 0.5.0 (Home Assistant): a dict of headers keeps only the last Via and Record-Route;
  no compact forms (``i:`` gives no Call-ID), no folding, no digest, transactions or route sets;
  asyncio-only. Its shape (pure media pieces, canned-message tests) is what we copied instead.
- sippy 2.5.0 (RFC 3261 stack and B2BUA): parses all of the above correctly and has SHA-256
  digest, but brings ElPeriodic, rtpsynth, g722, pycryptodome, websockets, flask and flask-login,
  its own event loop and UA state machines, prints to stdout on odd bodies, and has no size or
  source checks; using it would trade this package's 2,500 lines (docstrings included) for a
  17,000-line dependency we would still have to wrap to get the hardening above. Its parser alone
  would save us the 250 lines of message.py and still need the caps and the first-line screen.
"""
