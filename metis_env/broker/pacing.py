"""How fast the broker sends toward one upstream (``RateControl``), and requests taking their turns
at that pace (``Pacer``).

The ALCF gateway allows a user 10 requests/s across all of that user's processes (a sliding window of
one second over the requests it let through) and answers 429 without ``Retry-After`` past it. Brokers
on several nodes share that limit without talking to each other, so each one learns its share from
its own 429s, as TCP flows learn theirs from losses:

- it starts at the cap (``rate_limit``; 10/s for the gateway) and requests leave one at a time,
  spaced at the current rate (a token bucket one request deep), never more than the cap in any window;
- a 429 cuts the rate to 70% (or, when that is lower, to the share of the last second's answers that
  succeeded: four brokers that start together at the cap learn their quarter in one or two cuts), never
  below a floor, and only for a request sent after the last cut: the 429s of requests already on their
  way say nothing new;
- the broker remembers the rate the 429s began at and climbs back to 80% of it within a few seconds,
  then slowly (1% of the cap per second of answers that succeed, so that few 429s are spent probing),
  faster the longer no 429 comes (doubling every 3 s after 8 s quiet): what a broker that finished
  leaves is taken up by the others;
- a request that got a 429 is held for a jittered exponential back-off, then goes first.

These figures were chosen with a simulation of 1 broker x 256 clients and 4 brokers x 64 clients
against FIRST's throttle (bench/jobs.sh measures the real thing). Standard library only.
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from collections.abc import Callable

GATEWAY_RATE = 10.0  # requests/s: FIRST's RATE_LIMIT_PER_SEC_PER_USER
WINDOW = 1.02  # seconds: the gateway's one-second window, and a margin for the way there
ANSWER_CREDIT = 1.0  # seconds: how late after sending a request the gateway may have counted it


class RateControl:
    """The rate to send at toward one upstream, from the answers that came back (not thread-safe:
    the ``Pacer`` holds its lock around every call). ``cap`` None: no limit until the first 429."""

    CUT = 0.7  # a 429 leaves this much of the rate
    SHARE_MARGIN = 0.95  # ... or this much of the share of the last window's answers that succeeded
    REGAIN = 0.8  # of the rate the 429s began at, regained within REGAIN_SECONDS of a cut
    REGAIN_SECONDS = 5.0
    CLIMB = 0.01  # of the cap (or, with no cap, of the rate 429s began at) gained per second
    QUIET = 8.0  # seconds without a cut after which the climb doubles every DOUBLING seconds
    DOUBLING = 3.0
    FLOOR = 0.005  # of the cap (or of the rate 429s began at): the least the rate is cut to

    def __init__(self, cap: float | None, clock: Callable[[], float] = time.monotonic) -> None:
        self.cap = cap
        self.rate = cap  # requests/s; None: unpaced
        self.cuts = 0
        self._clock = clock
        self._onset = cap  # the rate the last cut began at
        self._cut_at: float | None = None
        self._grown_at = 0.0
        self._answers: deque[tuple[float, bool]] = deque()  # (when, succeeded) over the last window
        self._first_answer: float | None = None

    def __repr__(self) -> str:
        return f"RateControl(cap={self.cap!r}, rate={self.rate!r})"

    def succeeded(self, limited: bool = True) -> None:
        """An answer that was not a 429: climb by the time since the last one, if the rate is what
        held requests back (``limited``): a rate not used says nothing about the limit."""
        now = self._clock()
        self._answered(now, True)
        if self.rate is None or self._cut_at is None or self._onset is None:
            return
        elapsed, self._grown_at = now - self._grown_at, now
        if not limited:
            return
        since = now - self._cut_at
        climb = self.CLIMB * (self.cap or self._onset)
        if since > self.QUIET:
            climb *= 2 ** min(30.0, (since - self.QUIET) / self.DOUBLING)
        target = self.REGAIN * self._onset
        if since < self.REGAIN_SECONDS and self.rate < target:
            climb = max(climb, (target - self.rate) / max(0.5, self.REGAIN_SECONDS - since))
        raised = self.rate + climb * max(0.0, elapsed)
        self.rate = raised if self.cap is None else min(self.cap, raised)

    def throttled(self, sent_at: float, sending: float) -> bool:
        """A 429 to a request sent at ``sent_at``; ``sending``: requests sent in the last window (the
        rate to cut from while there is none). True when it cut the rate."""
        now = self._clock()
        self._answered(now, False)
        if self._cut_at is not None and sent_at < self._cut_at:
            return False
        current = self.rate if self.rate is not None else max(1.0, sending / WINDOW)
        cut = current * self.CUT
        if self._first_answer is not None and now - self._first_answer >= WINDOW and len(self._answers) >= 4:
            share = sum(ok for _, ok in self._answers) / len(self._answers)
            cut = max(current * self.CUT ** 2, min(cut, self.SHARE_MARGIN * current * share))  # two cuts at most
        self._onset = current
        self.rate = max(self.FLOOR * (self.cap or current), cut)
        self._cut_at = self._grown_at = now
        self.cuts += 1
        return True

    def _answered(self, now: float, succeeded: bool) -> None:
        if self._first_answer is None:
            self._first_answer = now
        self._answers.append((now, succeeded))
        while self._answers and self._answers[0][0] <= now - WINDOW:
            self._answers.popleft()


class Turn:
    """One request's passage: when it was sent, and, once answered, the moment the gateway's window
    counts it from."""

    __slots__ = ("sent", "counted")

    def __init__(self, sent: float) -> None:
        self.sent = sent
        self.counted: float | None = None  # not answered yet: the gateway may count it at any moment

    def __repr__(self) -> str:
        return f"Turn(sent={self.sent:.3f})"


class Pacer:
    """Requests toward one upstream leave one at a time, in order (a held request first), each when
    the rate and the cap's window allow it. Only the first in line sleeps; the others wait to be it."""

    def __init__(self, cap: float | None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] | None = None) -> None:
        self.cap = cap
        self.control = RateControl(cap, clock)
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._line: deque[threading.Condition] = deque()
        self._sent: deque[Turn] = deque()  # the last few turns, for the cap's window
        self._window = int(cap) if cap and cap >= 1 else 0
        self._slot = -1e9  # the moment the last request was due to leave at: the next is due 1/rate later
        self.waiting = 0

    def __repr__(self) -> str:
        return f"Pacer(cap={self.cap!r}, rate={self.rate!r})"

    @property
    def rate(self) -> float | None:
        with self._lock:
            return self.control.rate

    def wait_turn(self, first: bool = False) -> Turn:
        """Block until this request may go -> its turn (for ``answered``, ``succeeded``,
        ``throttled``). ``first``: a held request, which goes before those that have not been sent yet."""
        with self._lock:
            mine = threading.Condition(self._lock)
            (self._line.appendleft if first else self._line.append)(mine)
            self.waiting += 1
            try:
                while True:
                    if self._line[0] is not mine:
                        mine.wait()
                        continue
                    now = self._clock()
                    moment = self._moment(now)
                    if moment <= now:
                        break
                    if self._sleep is None:
                        mine.wait(moment - now)  # woken early by an answer or a 429: the moment moves
                    else:  # a test's clock
                        self._lock.release()
                        try:
                            self._sleep(moment - now)
                        finally:
                            self._lock.acquire()
                turn = Turn(now)
                self._sent.append(turn)
                while len(self._sent) > max(4 * self._window, 16):
                    self._sent.popleft()
                rate = self.control.rate
                if rate:
                    # a request that left a little late (a busy host wakes threads late) does not delay
                    # the next: the rate, not the last departure, sets the pace; after a pause, it does
                    due = self._slot + 1.0 / rate
                    self._slot = due if 0 <= now - due <= 0.5 / rate else now
                return turn
            finally:
                self.waiting -= 1
                self._line.remove(mine)
                if self._line:
                    self._line[0].notify()

    def _moment(self, now: float) -> float:
        rate = self.control.rate
        moment = self._slot + 1.0 / rate if rate else now  # the current rate: a cut or a raise counts at once
        if self._window and len(self._sent) >= self._window:
            # the cap's window: a window after the request ``cap`` places back was counted, or, while
            # it is on its way (a loaded host can take a second), after the latest it may be counted
            back = self._sent[-self._window]
            counted = back.counted if back.counted is not None else min(now, back.sent + ANSWER_CREDIT)
            moment = max(moment, counted + WINDOW)
        return moment

    def answered(self, turn: Turn) -> None:
        """The answer to ``turn`` came: the gateway counted the request at some moment between sending
        and now. Counting it from there (at most ``ANSWER_CREDIT`` after it was sent) keeps a loaded
        host's jitter from pushing the eleventh request into the first one's second."""
        with self._lock:
            turn.counted = min(self._clock(), turn.sent + ANSWER_CREDIT)
            if self._line:
                self._line[0].notify()

    def succeeded(self) -> None:
        with self._lock:
            self.control.succeeded(limited=bool(self._line))  # requests wait: the rate holds them back

    def throttled(self, turn: Turn) -> None:
        """A 429 to ``turn``'s request: send slower, from the last departure on."""
        with self._lock:
            now = self._clock()
            sending = sum(1 for t in self._sent if t.sent > now - WINDOW)
            if self.control.throttled(turn.sent, sending) and self._line:
                self._line[0].notify()


def backoff(attempt: int, base: float = 0.25, ceiling: float = 8.0) -> float:
    """Seconds to hold a request before its ``attempt``-th retry: exponential, with full jitter."""
    return random.uniform(0.5, 1.0) * min(ceiling, base * 2 ** attempt)
