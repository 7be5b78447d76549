"""The session and client-sender machines, walked through their tables: every listed
transition works from its state, every other (state, event) pair raises and changes nothing."""

from __future__ import annotations

from support.machines import walk
from twisted.internet.testing import StringTransport

from pybrid.proxy.clients.sender import ClientSender
from pybrid.proxy.clients.session import Session
from pybrid.proxy.clients.states import SENDER, SESSION, SenderState, SessionState


def test_session_table_walk():
    refused = walk(
        SESSION, SessionState,
        make=lambda state: Session("s", "peer", ClientSender(StringTransport()), state=state),
        fire=lambda session, event: session.transition(event),
        read=lambda session: session.state,
    )
    assert refused == 6 * (11 + 1) - 16  # e.g. no promote without a claim


def test_session_table_covers_the_life_of_a_session():
    path = [("admit", SessionState.IDLE), ("claim", SessionState.QUEUED),
            ("promote", SessionState.ACTIVE), ("end", SessionState.CLOSED),
            ("end", SessionState.CLOSED)]
    state = SessionState.PENDING
    for event, want in path:
        state = SESSION.next(state, event)
        assert state is want


def test_sender_table_walk():
    refused = walk(
        SENDER, SenderState,
        make=lambda state: ClientSender(StringTransport(), state=state),
        fire=lambda sender, event: sender._to(event),
        read=lambda sender: sender.state,
    )
    assert refused == 8 * (7 + 1) - 39  # e.g. nothing drains an OPEN sender


def test_sender_closed_and_paused_are_read_from_the_state():
    accepting = {SenderState.OPEN, SenderState.PAUSED}
    paused = {SenderState.PAUSED, SenderState.CLOSING_PAUSED}
    for state in SenderState:
        sender = ClientSender(StringTransport(), state=state)
        assert sender.closed is (state not in accepting)
        assert sender.paused is (state in paused)
