"""The job store's Lua scripts: each state change that can race (terminate vs. start, finish
vs. cancel, a lease taken over) runs atomically inside Redis.

The scripts that move a job are built from :data:`service.jobs.states.JOB_MOVES`: each
starts with the same prelude (its keys, the job's state, and the only code that ends a job,
:func:`finish_as` in Lua) and a guard, generated from the table, that returns before
anything is written when the job is in a state the move does not act from. Those of the
measurement are built the same way from :data:`~service.jobs.states.QUALITY_MOVES`. The
KEYS and ARGV each script takes are above it.
"""

from __future__ import annotations

from service.jobs.states import JOB_MOVES, QUALITY_MOVES, Move, sources


def _guard(moves: tuple[Move, ...], event: str, state: str, missing: str, other: str) -> str:
    """Lua run before anything is written: ``missing`` (a statement) when there is no such
    record, ``return other`` when ``state`` (the Lua variable holding it) is not a state
    the table lets ``event`` act from."""
    acts = ", ".join(f"{s} = true" for s in sources(moves, event))
    return (
        f"if not {state} then {missing} end\nif not ({{{acts}}})[{state}] then return {other} end\n"
    )


# -- the job ---------------------------------------------------------------------------------
# Every script that moves a job takes these KEYS: job hash, queued zset, running zset,
# finished-stats hash, lease, webhooks due zset (service.jobs.keys.Keys.lifecycle); and
# these first ARGV: job id, now, ttl.
_JOB_PRELUDE = """
local job, queued, running, finished = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local lease, webhooks = KEYS[5], KEYS[6]
local id, now, ttl = ARGV[1], ARGV[2], ARGV[3]
local state = redis.call('HGET', job, 'state')

-- The only code that writes a final state. The job leaves the queues, its lease goes, it is
-- counted, its record expires after the ttl, and a job whose push gave a webhook_url
-- ('wh_state' waiting) has its delivery made due now, in the same atomic step: no final
-- state is ever recorded without its delivery queued ({prefix}:webhooks, a zset of job ids
-- scored by when their next attempt is due; service/jobs/webhooks.py).
local function finish_as(final, fields)
  redis.call('HSET', job, 'state', final, 'finished_at', now, unpack(fields))
  redis.call('ZREM', queued, id)
  redis.call('ZREM', running, id)
  redis.call('DEL', lease)
  redis.call('HINCRBY', finished, final, 1)
  redis.call('EXPIRE', job, ttl)
  if redis.call('HGET', job, 'wh_state') == 'waiting' then
    redis.call('HSET', job, 'wh_state', 'pending', 'wh_next_at', now)
    redis.call('ZADD', webhooks, now, id)
  end
  return final
end

-- A cancel flagged while the job waited or ran ends it as canceled wherever it would
-- otherwise start or go back to the queue (claim, hand-back).
local function canceled_meanwhile()
  if redis.call('HGET', job, 'cancel') ~= '1' then return false end
  finish_as('canceled', {'stage', 'canceled'})
  return true
end

-- Back in the queue at ``score``, as if it had not started.
local function back_to_queue(score)
  redis.call('HSET', job, 'state', 'queued', 'stage', 'queued', 'progress', '0')
  redis.call('ZREM', running, id)
  redis.call('ZADD', queued, score, id)
end
"""


def _job_script(event: str, body: str, missing: str = "return false", other: str = "state") -> str:
    return _JOB_PRELUDE + _guard(JOB_MOVES, event, "state", missing, other) + body


# ARGV: job id, now, ttl. 'canceled' (it was queued: it ends now), 'canceling' (running: it
# is flagged and its runner stops at its next check), another state (nothing done), or false.
CANCEL = _job_script(
    "cancel",
    """
if state == 'running' then
  redis.call('HSET', job, 'cancel', '1')
  return 'canceling'
end
return finish_as('canceled', {'cancel', '1', 'stage', 'canceled'})
""",
)

# ARGV: job id, now, ttl, max attempts, worker name, lease holder, lease ms, time limit s
# (0: none). A running job whose lease is held is being run right now (a redelivered copy of
# its message must not start it twice): 'busy'. Without a lease its runner is gone: run
# again, unless it had been running past the time limit ('timeout': it fails).
CLAIM = _job_script(
    "claim",
    """
if state == 'running' and redis.call('EXISTS', lease) == 1 then return 'busy' end
if canceled_meanwhile() then return 'canceled' end
local limit = tonumber(ARGV[8] or '0') or 0
local started = tonumber(redis.call('HGET', job, 'started_at') or '')
if state == 'running' and limit > 0 and started and tonumber(now) - started > limit then
  finish_as('failed', {'stage', 'failed', 'error', cjson.encode({code = 'timeout',
    message = 'the job ran past its time limit and its worker was lost'})})
  return 'timeout'
end
local attempts = redis.call('HINCRBY', job, 'attempts', 1)
if attempts > tonumber(ARGV[4]) then
  finish_as('failed', {'stage', 'failed', 'error', cjson.encode({code = 'worker_lost',
    message = 'the job was started ' .. (attempts - 1) ..
              ' times and its worker was lost each time'})})
  return 'exhausted'
end
redis.call('HSET', job, 'state', 'running', 'started_at', now, 'stage', 'starting',
           'progress', '0', 'worker', ARGV[5])
redis.call('ZREM', queued, id)
redis.call('ZADD', running, now, id)
if ARGV[6] ~= '' then redis.call('SET', lease, ARGV[6], 'PX', ARGV[7]) end
return 'run'
""",
    missing="return 'missing'",
)

# ARGV: job id, now, ttl, the final state, then field/value pairs. The final state, or false
# (the job was not running).
FINISH = _job_script(
    "finish",
    """
local fields = {}
for i = 5, #ARGV do fields[#fields + 1] = ARGV[i] end
return finish_as(ARGV[4], fields)
""",
    other="false",
)

# ARGV: job id, now, ttl, lease holder.
# An operator's stop (the worker drains): the running job goes back to 'queued' as if it had
# never started, its attempt given back (a stop is not a failure). Only the runner holding
# the lease may hand it back; canceled instead if a terminate came meanwhile. Idempotent: a
# job no longer running is left as it is and its state is returned.
HAND_BACK = _job_script(
    "hand_back",
    """
local holder = redis.call('GET', lease)
if holder and holder ~= ARGV[4] then return 'busy' end
redis.call('DEL', lease)
if canceled_meanwhile() then return 'canceled' end
if redis.call('HINCRBY', job, 'attempts', -1) < 0 then
  redis.call('HSET', job, 'attempts', '0')
end
redis.call('HDEL', job, 'started_at', 'worker')
back_to_queue(tonumber(redis.call('HGET', job, 'created_at') or '') or tonumber(now))
return 'handed_back'
""",
)

# KEYS: lease, job; ARGV: holder, lease ms. Renew the lease of a running job: not when
# another runner holds it, nor once the job has left the running state.
RENEW = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
if redis.call('HGET', KEYS[2], 'state') ~= 'running' then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""

# KEYS: lease; ARGV: holder. Drop a lease only if it is still the given (dead) holder's.
BREAK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS: job; ARGV: stage, progress. Never recreates an expired record; progress never goes back.
PROGRESS = """
if redis.call('HGET', KEYS[1], 'state') ~= 'running' then return 0 end
local old = tonumber(redis.call('HGET', KEYS[1], 'progress') or '0') or 0
local new = tonumber(ARGV[2])
if new < old then new = old end
redis.call('HSET', KEYS[1], 'stage', ARGV[1], 'progress', tostring(new))
return 1
"""

# KEYS: job, queued, running, lease, owner index, idempotency key (the job key when none),
# webhooks due. ARGV: job id. DELETE /jobs/{id}: every service key naming the job goes at
# once; the idempotency binding only while it still names this job (a later push may have
# taken it).
PURGE = """
redis.call('DEL', KEYS[1], KEYS[4])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[5], ARGV[1])
redis.call('ZREM', KEYS[7], ARGV[1])
if KEYS[6] ~= KEYS[1] then
  local bound = redis.call('GET', KEYS[6])
  if bound and string.sub(bound, 1, #ARGV[1] + 1) == ARGV[1] .. ' ' then
    redis.call('DEL', KEYS[6])
  end
end
return 1
"""

# -- the quality measurement of a succeeded job (worker/quality.py) ---------------------------
# Its own fields on the job's hash: q_state (pending, running, ready, failed, skipped), q_note,
# q_metrics (JSON), q_cancel, q_attempts, q_holder, q_started_at, q_finished_at, q_yields.
# None of these scripts recreates a record that is gone (deleted or expired): they answer
# 'missing'. KEYS: job; ARGV: now, then the script's own.
_QUALITY_PRELUDE = """
local job, now = KEYS[1], ARGV[1]
local q = redis.call('HGET', job, 'q_state')

-- A measurement canceled (terminate or DELETE of its job) before it ran to its end.
local function skipped_as_canceled()
  redis.call('HSET', job, 'q_state', 'skipped', 'q_note', 'canceled', 'q_finished_at', now)
  return 'skipped'
end
"""
# no measurement: 'missing' when the job is gone too, else 'none'
_NO_MEASUREMENT = "if redis.call('EXISTS', job) == 0 then return 'missing' end return 'none'"


def _quality_script(event: str, body: str, missing: str = "return 'missing'") -> str:
    return _QUALITY_PRELUDE + _guard(QUALITY_MOVES, event, "q", missing, "q") + body


# ARGV: now, holder, max attempts. Start the measurement: 'run', or why not (its state when
# it is over; 'skipped' when a cancel came before it started).
QUALITY_CLAIM = _quality_script(
    "q_claim",
    """
if redis.call('HGET', job, 'q_cancel') == '1' then return skipped_as_canceled() end
local attempts = redis.call('HINCRBY', job, 'q_attempts', 1)
if attempts > tonumber(ARGV[3]) then
  redis.call('HSET', job, 'q_state', 'failed', 'q_finished_at', now, 'q_note',
             'the measurement was started ' .. (attempts - 1) ..
             ' times and its worker was lost each time')
  return 'failed'
end
redis.call('HSET', job, 'q_state', 'running', 'q_holder', ARGV[2], 'q_started_at', now)
return 'run'
""",
    missing=_NO_MEASUREMENT,
)

# ARGV: now, holder, state (ready, failed, skipped), note ('' for none), metrics JSON ('' for
# none). Record the end of a measurement, only by the runner that claimed it and only once
# (a repeat is answered with the state already recorded).
QUALITY_FINISH = _quality_script(
    "q_finish",
    """
if redis.call('HGET', job, 'q_holder') ~= ARGV[2] then return 'busy' end
redis.call('HSET', job, 'q_state', ARGV[3], 'q_finished_at', now)
if ARGV[4] ~= '' then redis.call('HSET', job, 'q_note', ARGV[4]) end
if ARGV[5] ~= '' then redis.call('HSET', job, 'q_metrics', ARGV[5]) end
redis.call('HDEL', job, 'q_holder')
return ARGV[3]
""",
)

# ARGV: now, holder. Give a running measurement back (its worker stops, or a job is waiting
# for the worker): pending again, its attempt not counted; 'skipped' instead when a cancel
# came meanwhile.
QUALITY_HAND_BACK = _quality_script(
    "q_hand_back",
    """
if redis.call('HGET', job, 'q_holder') ~= ARGV[2] then return 'busy' end
redis.call('HDEL', job, 'q_holder', 'q_started_at')
if redis.call('HGET', job, 'q_cancel') == '1' then return skipped_as_canceled() end
if redis.call('HINCRBY', job, 'q_attempts', -1) < 0 then
  redis.call('HSET', job, 'q_attempts', '0')
end
redis.call('HSET', job, 'q_state', 'pending')
return 'pending'
""",
)

# ARGV: now. Cancel a measurement: one not started yet is skipped at once ('skipped'); a
# running one is flagged ('canceling') and stops at its next check; else its state ('none'
# for a job without one, 'missing' for no job).
QUALITY_CANCEL = _quality_script(
    "q_cancel",
    """
redis.call('HSET', job, 'q_cancel', '1')
if q == 'running' then return 'canceling' end
return skipped_as_canceled()
""",
    missing=_NO_MEASUREMENT,
)

# KEYS: job; ARGV: note. A measurement whose task could not be sent: failed, if it still
# waits to be sent (1), else nothing (0).
QUALITY_UNSENT = """
if redis.call('HGET', KEYS[1], 'q_state') ~= 'pending' then return 0 end
redis.call('HSET', KEYS[1], 'q_state', 'failed', 'q_note', ARGV[1])
return 1
"""

# -- webhook deliveries (service/jobs/webhooks.py) ---------------------------------------------
# The due zset holds the job id of every delivery not yet done, scored by when its next
# attempt may start. Claiming an attempt pushes that score to the end of a lease, so a
# claimant that dies mid-attempt leaves it to be claimed again once the lease has passed.

# KEYS: webhooks due, job; ARGV: job id, now, lease until, claim token, max attempts.
# Claim the job's next attempt if it is due and no other claimant holds it: the attempt is
# counted, the state becomes 'delivering', and the record is returned (the body is built from
# it). False: not due, taken, or nothing to deliver (its entry is then dropped).
WEBHOOK_CLAIM = """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) > tonumber(ARGV[2]) then return false end
local state = redis.call('HGET', KEYS[2], 'wh_state')
if state ~= 'pending' and state ~= 'delivering' then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return false
end
if tonumber(redis.call('HGET', KEYS[2], 'wh_attempts') or '0') >= tonumber(ARGV[5]) then
  redis.call('HSET', KEYS[2], 'wh_state', 'failed')
  redis.call('HDEL', KEYS[2], 'wh_next_at', 'wh_lease')
  redis.call('ZREM', KEYS[1], ARGV[1])
  return false
end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
redis.call('HINCRBY', KEYS[2], 'wh_attempts', 1)
redis.call('HSET', KEYS[2], 'wh_state', 'delivering', 'wh_lease', ARGV[4])
redis.call('HDEL', KEYS[2], 'wh_next_at')
return redis.call('HGETALL', KEYS[2])
"""

# KEYS: webhooks due, job; ARGV: job id, claim token, now, '1' for a 2xx (else '0'), HTTP
# status ('' for no answer), error text, when the next attempt is due ('' for none: give up).
# A 2xx is recorded whoever claimed it, and ends the delivery for good; a failure only by the
# claim's holder (a stale claimant's report is dropped). Returns the delivery's new state
# ('delivered', 'pending', 'failed'), 'stale' or 'missing'.
WEBHOOK_DONE = """
local state = redis.call('HGET', KEYS[2], 'wh_state')
if not state then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return 'missing'
end
if state == 'delivered' then return 'delivered' end
if ARGV[4] == '1' then
  redis.call('HSET', KEYS[2], 'wh_state', 'delivered', 'wh_delivered_at', ARGV[3],
             'wh_code', ARGV[5])
  redis.call('HDEL', KEYS[2], 'wh_error', 'wh_next_at', 'wh_lease')
  redis.call('ZREM', KEYS[1], ARGV[1])
  return 'delivered'
end
if state ~= 'delivering' or redis.call('HGET', KEYS[2], 'wh_lease') ~= ARGV[2] then
  return 'stale'
end
if ARGV[5] ~= '' then redis.call('HSET', KEYS[2], 'wh_code', ARGV[5])
else redis.call('HDEL', KEYS[2], 'wh_code') end
redis.call('HSET', KEYS[2], 'wh_error', ARGV[6])
redis.call('HDEL', KEYS[2], 'wh_lease')
if ARGV[7] == '' then
  redis.call('HSET', KEYS[2], 'wh_state', 'failed')
  redis.call('ZREM', KEYS[1], ARGV[1])
  return 'failed'
end
redis.call('HSET', KEYS[2], 'wh_state', 'pending', 'wh_next_at', ARGV[7])
redis.call('ZADD', KEYS[1], ARGV[7], ARGV[1])
return 'pending'
"""

# KEYS: webhooks due, job; ARGV: job id, claim token, now. The claimant is stopping before
# its attempt got an answer: the attempt is given back (not counted) and is due at once, for
# whichever dispatcher runs next. 1 if given back, 0 if the claim was no longer its own.
WEBHOOK_RELEASE = """
if redis.call('HGET', KEYS[2], 'wh_state') ~= 'delivering' then return 0 end
if redis.call('HGET', KEYS[2], 'wh_lease') ~= ARGV[2] then return 0 end
if redis.call('HINCRBY', KEYS[2], 'wh_attempts', -1) < 0 then
  redis.call('HSET', KEYS[2], 'wh_attempts', '0')
end
redis.call('HSET', KEYS[2], 'wh_state', 'pending', 'wh_next_at', ARGV[3])
redis.call('HDEL', KEYS[2], 'wh_lease')
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
return 1
"""

# -- the broker's own keys (service/jobs/broker.py) ---------------------------------------------
# kombu's Redis transport keeps each delivered, not yet acknowledged message in a hash
# ``unacked`` {delivery tag: [message, exchange, routing key]} and its delivery time in the
# zset ``unacked_index``.

# KEYS: unacked hash, unacked index; ARGV: task id, now. Every unacked message of that task
# is marked delivered ``now`` (its score in the index), so the broker's sweep, which puts back
# on the queue what was delivered longer than the visibility timeout ago, leaves it alone while
# its runner lives (as SQS's ChangeMessageVisibility does). Returns how many were marked.
UNACKED_EXTEND = """
local marked = 0
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local ok, entry = pcall(cjson.decode, all[i + 1])
  if ok and type(entry) == 'table' and type(entry[1]) == 'table' then
    local msg = entry[1]
    local id = type(msg.headers) == 'table' and msg.headers.id or nil
    if id == nil and type(msg.properties) == 'table' then id = msg.properties.correlation_id end
    if id == ARGV[1] then
      marked = marked + redis.call('ZADD', KEYS[2], 'XX', 'CH', ARGV[2], all[i])
    end
  end
end
return marked
"""

# KEYS: the Celery queue's lists in the broker (one per priority); ARGV: job id. DELETE
# /jobs/{id} of a queued job: its message (Celery task id = job id) leaves the queue, so no
# broker key names the job either. Returns how many messages went.
DROP_QUEUED_MESSAGE = """
local dropped = 0
for _, list in ipairs(KEYS) do
  local items = redis.call('LRANGE', list, 0, -1)
  for _, item in ipairs(items) do
    if string.find(item, ARGV[1], 1, true) then
      dropped = dropped + redis.call('LREM', list, 1, item)
    end
  end
end
return dropped
"""
