"""The job store's Lua scripts: each state change that can race (terminate vs. start, finish
vs. cancel, a lease taken over) runs atomically inside Redis. Used by
:class:`service.store.JobStore`; the KEYS and ARGV each script takes are above it."""

# KEYS: job, queued zset, running zset, finished-stats hash
# ARGV: job id, now, ttl
CANCEL = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return false end
if state == 'queued' then
  redis.call('HSET', KEYS[1], 'state', 'canceled', 'cancel', '1', 'finished_at', ARGV[2],
             'stage', 'canceled')
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('HINCRBY', KEYS[4], 'canceled', 1)
  redis.call('EXPIRE', KEYS[1], ARGV[3])
  return 'canceled'
end
if state == 'running' then
  redis.call('HSET', KEYS[1], 'cancel', '1')
  return 'canceling'
end
return state
"""

# KEYS: job, queued, running, finished-stats, lease
# ARGV: job id, now, ttl, max attempts, worker name, lease holder, lease ms
# A running job whose lease is held is being run right now (a redelivered copy of its
# message must not start it twice): 'busy'. Without a lease its runner is gone: run again.
CLAIM = """
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
  return 'exhausted'
end
redis.call('HSET', KEYS[1], 'state', 'running', 'started_at', ARGV[2], 'stage', 'starting',
           'progress', '0', 'worker', ARGV[5])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
if ARGV[6] ~= '' then redis.call('SET', KEYS[5], ARGV[6], 'PX', ARGV[7]) end
return 'run'
"""

# KEYS: job, running, finished-stats, lease
# ARGV: job id, now, ttl, new state, then field/value pairs
FINISH = """
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'running' then return false end
redis.call('DEL', KEYS[4])
redis.call('HSET', KEYS[1], 'state', ARGV[4], 'finished_at', ARGV[2])
for i = 5, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HINCRBY', KEYS[3], ARGV[4], 1)
redis.call('EXPIRE', KEYS[1], ARGV[3])
return ARGV[4]
"""

# KEYS: lease, job; ARGV: holder, lease ms. Renew the lease of a running job: not when
# another runner holds it, nor once the job has left the running state.
RENEW = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
if redis.call('HGET', KEYS[2], 'state') ~= 'running' then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""

# KEYS: job, queued, running, finished-stats, lease; ARGV: job id, now, ttl.
# A running job whose lease has lapsed lost its runner: back to queued (the caller sends
# its message again), or canceled at once if a cancel was asked for meanwhile.
REQUEUE = """
if redis.call('HGET', KEYS[1], 'state') ~= 'running' then return false end
if redis.call('EXISTS', KEYS[5]) == 1 then return false end
redis.call('ZREM', KEYS[3], ARGV[1])
if redis.call('HGET', KEYS[1], 'cancel') == '1' then
  redis.call('HSET', KEYS[1], 'state', 'canceled', 'finished_at', ARGV[2], 'stage', 'canceled')
  redis.call('HINCRBY', KEYS[4], 'canceled', 1)
  redis.call('EXPIRE', KEYS[1], ARGV[3])
  return 'canceled'
end
redis.call('HSET', KEYS[1], 'state', 'queued', 'stage', 'queued', 'progress', '0')
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
return 'queued'
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
