"""The job store's Lua scripts: each state change that can race (terminate vs. start, finish
vs. cancel, a lease taken over) runs atomically inside Redis. Used by
:class:`service.store.JobStore`; the KEYS and ARGV each script takes are above it."""

# Every script that ends a job starts with this: a job whose push gave a webhook_url
# (``wh_state`` 'waiting') has its delivery made due now, in the same atomic step, so no
# final state can be recorded without its delivery being queued (``{prefix}:webhooks``, a
# zset of job ids scored by when their next attempt is due; service/webhook_queue.py).
_WEBHOOK_DUE = """
local function webhook_due(job, due, id, now)
  if redis.call('HGET', job, 'wh_state') == 'waiting' then
    redis.call('HSET', job, 'wh_state', 'pending', 'wh_next_at', now)
    redis.call('ZADD', due, now, id)
  end
end
"""

# KEYS: job, queued zset, running zset, finished-stats hash, webhooks due zset
# ARGV: job id, now, ttl
CANCEL = (
    _WEBHOOK_DUE
    + """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return false end
if state == 'queued' then
  redis.call('HSET', KEYS[1], 'state', 'canceled', 'cancel', '1', 'finished_at', ARGV[2],
             'stage', 'canceled')
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('HINCRBY', KEYS[4], 'canceled', 1)
  redis.call('EXPIRE', KEYS[1], ARGV[3])
  webhook_due(KEYS[1], KEYS[5], ARGV[1], ARGV[2])
  return 'canceled'
end
if state == 'running' then
  redis.call('HSET', KEYS[1], 'cancel', '1')
  return 'canceling'
end
return state
"""
)

# KEYS: job, queued, running, finished-stats, lease, webhooks due
# ARGV: job id, now, ttl, max attempts, worker name, lease holder, lease ms
# A running job whose lease is held is being run right now (a redelivered copy of its
# message must not start it twice): 'busy'. Without a lease its runner is gone: run again.
CLAIM = (
    _WEBHOOK_DUE
    + """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return 'missing' end
if state ~= 'queued' and state ~= 'running' then return state end
if state == 'running' and redis.call('EXISTS', KEYS[5]) == 1 then return 'busy' end
if redis.call('HGET', KEYS[1], 'cancel') == '1' then
  redis.call('HSET', KEYS[1], 'state', 'canceled', 'finished_at', ARGV[2], 'stage', 'canceled')
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('ZREM', KEYS[3], ARGV[1])
  redis.call('HINCRBY', KEYS[4], 'canceled', 1)
  redis.call('EXPIRE', KEYS[1], ARGV[3])
  webhook_due(KEYS[1], KEYS[6], ARGV[1], ARGV[2])
  return 'canceled'
end
local attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
if attempts > tonumber(ARGV[4]) then
  redis.call('HSET', KEYS[1], 'state', 'failed', 'finished_at', ARGV[2], 'stage', 'failed',
             'error', cjson.encode({code='worker_lost',
               message='the job was started ' .. (attempts - 1) ..
                       ' times and its worker was lost each time'}))
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('ZREM', KEYS[3], ARGV[1])
  redis.call('HINCRBY', KEYS[4], 'failed', 1)
  redis.call('EXPIRE', KEYS[1], ARGV[3])
  webhook_due(KEYS[1], KEYS[6], ARGV[1], ARGV[2])
  return 'exhausted'
end
redis.call('HSET', KEYS[1], 'state', 'running', 'started_at', ARGV[2], 'stage', 'starting',
           'progress', '0', 'worker', ARGV[5])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
if ARGV[6] ~= '' then redis.call('SET', KEYS[5], ARGV[6], 'PX', ARGV[7]) end
return 'run'
"""
)

# KEYS: job, running, finished-stats, lease, webhooks due
# ARGV: job id, now, ttl, new state, then field/value pairs
FINISH = (
    _WEBHOOK_DUE
    + """
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'running' then return false end
redis.call('DEL', KEYS[4])
redis.call('HSET', KEYS[1], 'state', ARGV[4], 'finished_at', ARGV[2])
for i = 5, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HINCRBY', KEYS[3], ARGV[4], 1)
redis.call('EXPIRE', KEYS[1], ARGV[3])
webhook_due(KEYS[1], KEYS[5], ARGV[1], ARGV[2])
return ARGV[4]
"""
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

# KEYS: job, queued, running, finished-stats, lease, webhooks due; ARGV: job id, now, ttl.
# A running job whose lease has lapsed lost its runner: back to queued (the caller sends
# its message again), or canceled at once if a cancel was asked for meanwhile.
REQUEUE = (
    _WEBHOOK_DUE
    + """
if redis.call('HGET', KEYS[1], 'state') ~= 'running' then return false end
if redis.call('EXISTS', KEYS[5]) == 1 then return false end
redis.call('ZREM', KEYS[3], ARGV[1])
if redis.call('HGET', KEYS[1], 'cancel') == '1' then
  redis.call('HSET', KEYS[1], 'state', 'canceled', 'finished_at', ARGV[2], 'stage', 'canceled')
  redis.call('HINCRBY', KEYS[4], 'canceled', 1)
  redis.call('EXPIRE', KEYS[1], ARGV[3])
  webhook_due(KEYS[1], KEYS[6], ARGV[1], ARGV[2])
  return 'canceled'
end
redis.call('HSET', KEYS[1], 'state', 'queued', 'stage', 'queued', 'progress', '0')
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
return 'queued'
"""
)

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

# KEYS: job, queued, running, finished-stats, lease, webhooks due; ARGV: job id, now, ttl,
# lease holder.
# An operator's stop (the worker drains): the running job goes back to 'queued' as if it had
# never started, its attempt given back (a stop is not a failure). Only the runner holding
# the lease may hand it back; canceled instead if a terminate came meanwhile. Idempotent: a
# job no longer running is left as it is and its state is returned.
HAND_BACK = (
    _WEBHOOK_DUE
    + """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return false end
if state ~= 'running' then return state end
local holder = redis.call('GET', KEYS[5])
if holder and holder ~= ARGV[4] then return 'busy' end
redis.call('DEL', KEYS[5])
redis.call('ZREM', KEYS[3], ARGV[1])
if redis.call('HGET', KEYS[1], 'cancel') == '1' then
  redis.call('HSET', KEYS[1], 'state', 'canceled', 'finished_at', ARGV[2], 'stage', 'canceled')
  redis.call('HINCRBY', KEYS[4], 'canceled', 1)
  redis.call('EXPIRE', KEYS[1], ARGV[3])
  webhook_due(KEYS[1], KEYS[6], ARGV[1], ARGV[2])
  return 'canceled'
end
if redis.call('HINCRBY', KEYS[1], 'attempts', -1) < 0 then
  redis.call('HSET', KEYS[1], 'attempts', '0')
end
redis.call('HSET', KEYS[1], 'state', 'queued', 'stage', 'queued', 'progress', '0')
redis.call('HDEL', KEYS[1], 'started_at', 'worker')
local created = tonumber(redis.call('HGET', KEYS[1], 'created_at') or '') or tonumber(ARGV[2])
redis.call('ZADD', KEYS[2], created, ARGV[1])
return 'handed_back'
"""
)

# The broker's own keys (kombu's Redis transport keeps each delivered, not yet acknowledged
# message in a hash ``unacked`` {delivery tag: [message, exchange, routing key]} and its
# delivery time in the zset ``unacked_index``).
# KEYS: unacked hash; ARGV: task id. The delivery tags of that task's unacked messages.
UNACKED_TAGS = """
local tags = {}
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local ok, entry = pcall(cjson.decode, all[i + 1])
  if ok and type(entry) == 'table' and type(entry[1]) == 'table' then
    local msg = entry[1]
    local id = type(msg.headers) == 'table' and msg.headers.id or nil
    if id == nil and type(msg.properties) == 'table' then id = msg.properties.correlation_id end
    if id == ARGV[1] then table.insert(tags, all[i]) end
  end
end
return tags
"""

# KEYS: unacked hash, unacked index, queue list; ARGV: tag to put back ('' for none), the
# message to push for it, then tags to drop. Puts one unacked message back at the head of
# its queue (the next one a worker takes; kombu pops from the right) and forgets the others,
# all at once. Returns 1 if the message was put back (0: its tag was gone, e.g. acked).
UNACKED_RESTORE = """
local restored = 0
if ARGV[1] ~= '' and redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('RPUSH', KEYS[3], ARGV[2])
  restored = 1
end
for i = 3, #ARGV do
  redis.call('HDEL', KEYS[1], ARGV[i])
  redis.call('ZREM', KEYS[2], ARGV[i])
end
return restored
"""

# KEYS: job, queued, running, lease, owner index, idempotency key (the job key when none),
# webhooks due. ARGV: job id. DELETE /jobs/{id}: every service key naming the job goes at once; the
# idempotency binding only while it still names this job (a later push may have taken it).
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

# -- webhook deliveries (service/webhook_queue.py) --------------------------------------------
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

# -- the quality measurement of a succeeded job (worker/quality.py) ---------------------------
# Its own fields on the job's hash: q_state (pending, running, ready, failed, skipped), q_note,
# q_metrics (JSON), q_cancel, q_attempts, q_holder, q_started_at, q_finished_at. None of these
# scripts recreates a record that is gone (deleted or expired): they answer 'missing'.

# KEYS: job; ARGV: holder, now, max attempts. Start the measurement: 'run', or why not
# (its state when it is over; 'skipped' when a cancel came before it started).
QUALITY_CLAIM = """
local q = redis.call('HGET', KEYS[1], 'q_state')
if not q then
  if redis.call('EXISTS', KEYS[1]) == 0 then return 'missing' end
  return 'none'
end
if q ~= 'pending' and q ~= 'running' then return q end
if redis.call('HGET', KEYS[1], 'q_cancel') == '1' then
  redis.call('HSET', KEYS[1], 'q_state', 'skipped', 'q_note', 'canceled', 'q_finished_at', ARGV[2])
  return 'skipped'
end
local attempts = redis.call('HINCRBY', KEYS[1], 'q_attempts', 1)
if attempts > tonumber(ARGV[3]) then
  redis.call('HSET', KEYS[1], 'q_state', 'failed', 'q_finished_at', ARGV[2], 'q_note',
             'the measurement was started ' .. (attempts - 1) ..
             ' times and its worker was lost each time')
  return 'failed'
end
redis.call('HSET', KEYS[1], 'q_state', 'running', 'q_holder', ARGV[1], 'q_started_at', ARGV[2])
return 'run'
"""

# KEYS: job; ARGV: holder, now, state (ready, failed, skipped), note ('' for none), metrics
# JSON ('' for none). Record the end of a measurement, only by the runner that claimed it
# and only once (a repeat is answered with the state already recorded).
QUALITY_FINISH = """
local q = redis.call('HGET', KEYS[1], 'q_state')
if not q then return 'missing' end
if q ~= 'running' then return q end
if redis.call('HGET', KEYS[1], 'q_holder') ~= ARGV[1] then return 'busy' end
redis.call('HSET', KEYS[1], 'q_state', ARGV[3], 'q_finished_at', ARGV[2])
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'q_note', ARGV[4]) end
if ARGV[5] ~= '' then redis.call('HSET', KEYS[1], 'q_metrics', ARGV[5]) end
redis.call('HDEL', KEYS[1], 'q_holder')
return ARGV[3]
"""

# KEYS: job; ARGV: holder, now. Give a running measurement back (its worker stops, or a job
# is waiting for the worker): pending again, its attempt not counted; 'skipped' instead when
# a cancel came meanwhile.
QUALITY_HAND_BACK = """
local q = redis.call('HGET', KEYS[1], 'q_state')
if not q then return 'missing' end
if q ~= 'running' then return q end
if redis.call('HGET', KEYS[1], 'q_holder') ~= ARGV[1] then return 'busy' end
redis.call('HDEL', KEYS[1], 'q_holder', 'q_started_at')
if redis.call('HGET', KEYS[1], 'q_cancel') == '1' then
  redis.call('HSET', KEYS[1], 'q_state', 'skipped', 'q_note', 'canceled', 'q_finished_at', ARGV[2])
  return 'skipped'
end
if redis.call('HINCRBY', KEYS[1], 'q_attempts', -1) < 0 then
  redis.call('HSET', KEYS[1], 'q_attempts', '0')
end
redis.call('HSET', KEYS[1], 'q_state', 'pending')
return 'pending'
"""

# KEYS: job; ARGV: now. Cancel a measurement: one not started yet is skipped at once
# ('skipped'); a running one is flagged ('canceling') and stops at its next check; else its
# state ('none' for a job without one, 'missing' for no job).
QUALITY_CANCEL = """
local q = redis.call('HGET', KEYS[1], 'q_state')
if not q then
  if redis.call('EXISTS', KEYS[1]) == 0 then return 'missing' end
  return 'none'
end
if q == 'pending' then
  redis.call('HSET', KEYS[1], 'q_state', 'skipped', 'q_note', 'canceled', 'q_cancel', '1',
             'q_finished_at', ARGV[1])
  return 'skipped'
end
if q == 'running' then
  redis.call('HSET', KEYS[1], 'q_cancel', '1')
  return 'canceling'
end
return q
"""
