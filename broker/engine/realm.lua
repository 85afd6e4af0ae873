-- The realm's shared state, changed only here, one atomic call per broker round.
--
-- ARGV[1] key prefix ("mtor:<realm>:"), ARGV[2] the calling broker's id,
-- ARGV[3] JSON list of operations, ARGV[4..] blobs (payloads, frames) that
-- the operations name by index, so no payload is ever JSON-escaped.
-- Returns {JSON list of results, blob...}; results name returned blobs by index.
--
-- Keys (P = prefix):
--   P job:G        hash: q (payload blob), user, intent, model ('' = any), price,
--                  home (broker of its client, '' = none), state ('q' queued | 'r' running |
--                  'h' held: its journal row is being written, see hold),
--                  broker (running on), attempts, tried (JSON list), t (accepted), w (waiting since)
--   P rr:I         list: users with queued intents of intent I, in round-robin order
--   P uq:I:U       list: user U's queued guids of intent I, oldest first
--   P depth:I      queued intents of intent I
--   P intents      set of intents that have (or had) a queue
--   P run:B        set: guids running on (or held by) broker B
--   P hungry:I     list: brokers with free workers for I that found its queue empty
--   P offer:I      hash: hungry broker -> its free slots for I then (JSON), for wake to pop with
--   P live:U       set: U's queued or running guids (realm-wide per-user limits)
--   P inbox:B      stream: frames and requests for broker B
--   P hb:B         presence: expires unless broker B beats
--   P brokers      hash: broker id -> its self-description (JSON)
--   P workers      hash: worker id -> its description (JSON, with its broker)
--   P wset:B       set: worker ids on broker B
--   P epoch        random id of this Redis's data: a new one means the data was lost

local P = ARGV[1]
local me = ARGV[2]
local ops = cjson.decode(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local out = {''}

local function blob(op, k) return ARGV[4 + op.b + k] end
local function give(value) out[#out + 1] = value; return #out end
local function alive(b) return b ~= '' and redis.call('EXISTS', P .. 'hb:' .. b) == 1 end

-- A broker presumed dead may be alive (its loop stalled, its link to Redis
-- was cut): what is sent to it is kept for INBOX_GRACE_MS, and its next beat
-- keeps its inbox for good. A broker that is really gone leaves nothing behind.
local INBOX_GRACE_MS = 60000

local function tell(b, field, value)
  if b == '' then return end
  local inbox = P .. 'inbox:' .. b
  redis.call('XADD', inbox, 'MAXLEN', '~', 100000, '*', field, value)
  if not alive(b) then redis.call('PEXPIRE', inbox, INBOX_GRACE_MS) end
end

-- the fields a broker needs to run or end a job, and its payload as a returned blob
local function described(g)
  local f = redis.call('HMGET', P .. 'job:' .. g, 'user', 'intent', 'price', 'home', 'state', 'broker',
                       'attempts', 'tried', 't', 'w', 'q')
  if not f[1] then return nil end
  return {g = g, user = f[1], intent = f[2], price = f[3], home = f[4], state = f[5], broker = f[6],
          attempts = tonumber(f[7]), tried = f[8], t = tonumber(f[9]), w = tonumber(f[10]), q = give(f[11])}
end

local function enqueue(i, u, g, front)
  local uq = P .. 'uq:' .. i .. ':' .. u
  local rr = P .. 'rr:' .. i
  if front then
    redis.call('LPUSH', uq, g)
    redis.call('LREM', rr, 1, u)
    redis.call('LPUSH', rr, u) -- a requeued intent goes first, as SafeQueue's
  else
    if redis.call('RPUSH', uq, g) == 1 then redis.call('RPUSH', rr, u) end
  end
  redis.call('INCR', P .. 'depth:' .. i)
  redis.call('SADD', P .. 'intents', i)
  redis.call('HSET', P .. 'job:' .. g, 'state', 'q', 'broker', '', 'w', now)
end

local function unqueue(i, u, g)
  local uq = P .. 'uq:' .. i .. ':' .. u
  if redis.call('LREM', uq, 1, g) == 0 then return false end
  if redis.call('LLEN', uq) == 0 then redis.call('LREM', P .. 'rr:' .. i, 1, u) end
  redis.call('DECR', P .. 'depth:' .. i)
  return true
end

local function forget(g, u)
  redis.call('DEL', P .. 'job:' .. g)
  redis.call('SREM', P .. 'live:' .. u, g)
end

-- SafeQueue's position: a job at depth d in its user's queue waits for d
-- rounds of every user at least that deep.
local function position(i, u)
  local d = redis.call('LLEN', P .. 'uq:' .. i .. ':' .. u) - 1
  local ahead = 0
  for _, v in ipairs(redis.call('LRANGE', P .. 'rr:' .. i, 0, -1)) do
    if v == u then ahead = ahead + d
    else ahead = ahead + math.min(redis.call('LLEN', P .. 'uq:' .. i .. ':' .. v), d + 1) end
  end
  return ahead
end

-- Deficit round robin with a unit cost, as SafeQueue.pop: each pop offers the
-- head of each user's queue in order and takes the first that a free worker
-- of `offer` ({{n = free slots, m = {model = true, ...}, o = owner}, ...})
-- serves (a worker with `o` serves only that address: an owner-only intent);
-- that user goes to the back of the round. Pops until no free slot fits, for
-- broker `b` (default: the caller). Returns the popped guids.
-- A broker whose free slots outlast the queue waits in hungry:I to be told,
-- with what is left of its offer in offer:I (so a push can pop for it).
local function pop_guids(i, offer, b)
  b = b or me
  local popped = {}
  local free = 0
  for _, w in ipairs(offer) do free = free + w.n end
  local rr = P .. 'rr:' .. i
  while free > 0 do
    local took = false
    for _, u in ipairs(redis.call('LRANGE', rr, 0, -1)) do
      local uq = P .. 'uq:' .. i .. ':' .. u
      local g = redis.call('LINDEX', uq, 0)
      local model = redis.call('HGET', P .. 'job:' .. g, 'model') or ''
      for _, w in ipairs(offer) do
        if w.n > 0 and (model == '' or w.m[model]) and (w.o == nil or w.o == string.lower(u)) then
          w.n = w.n - 1
          free = free - 1
          redis.call('LPOP', uq)
          redis.call('LREM', rr, 1, u)
          if redis.call('LLEN', uq) > 0 then redis.call('RPUSH', rr, u) end
          redis.call('DECR', P .. 'depth:' .. i)
          redis.call('HSET', P .. 'job:' .. g, 'state', 'r', 'broker', b)
          redis.call('SADD', P .. 'run:' .. b, g)
          popped[#popped + 1] = g
          took = true
          break
        end
      end
      if took then break end
    end
    if not took then break end
  end
  local hungry = P .. 'hungry:' .. i
  redis.call('LREM', hungry, 0, b)
  if free > 0 then
    redis.call('RPUSH', hungry, b)
    redis.call('HSET', P .. 'offer:' .. i, b, cjson.encode(offer))
  else
    redis.call('HDEL', P .. 'offer:' .. i, b)
  end
  return popped, free > 0
end

local function pop_for(i, offer)
  local guids, hungry = pop_guids(i, offer)
  local popped = {}
  for k, g in ipairs(guids) do popped[k] = described(g) end
  return popped, hungry
end

-- Tell the broker that has waited longest for work of intent I that there is
-- some (this broker, if waiting too, stays listed: it just had its turn): the
-- jobs its offer takes go in its inbox ('c:run', their payloads as 'q:G'), so
-- it starts them without a round trip of its own; with no offer stored, or
-- none that fits, it is told to pull.
local function wake(i)
  local hungry = P .. 'hungry:' .. i
  for _, b in ipairs(redis.call('LRANGE', hungry, 0, -1)) do
    if b ~= me then
      redis.call('LREM', hungry, 1, b)
      local stored = redis.call('HGET', P .. 'offer:' .. i, b)
      redis.call('HDEL', P .. 'offer:' .. i, b)
      if alive(b) then
        local guids, still = {}, false
        if stored then guids, still = pop_guids(i, cjson.decode(stored), b) end
        if #guids == 0 then
          tell(b, 'c:pull', i)
          return
        end
        local jobs, fields = {}, {}
        for k, g in ipairs(guids) do
          local f = redis.call('HMGET', P .. 'job:' .. g, 'user', 'intent', 'price', 'home', 'attempts', 'tried',
                               't', 'w', 'q')
          jobs[k] = {g = g, user = f[1], intent = f[2], price = f[3], home = f[4], attempts = tonumber(f[5]),
                     tried = f[6], t = tonumber(f[7]), w = tonumber(f[8])}
          fields[#fields + 1] = 'q:' .. g
          fields[#fields + 1] = f[9]
        end
        redis.call('XADD', P .. 'inbox:' .. b, 'MAXLEN', '~', 100000, '*',
                   'c:run', cjson.encode({i = i, jobs = jobs, hungry = still}), unpack(fields))
        return
      end
    end
  end
end

local function reap(b)
  local requeued = 0
  for _, g in ipairs(redis.call('SMEMBERS', P .. 'run:' .. b)) do
    local f = redis.call('HMGET', P .. 'job:' .. g, 'intent', 'user', 'broker')
    if f[1] and f[3] == b then
      enqueue(f[1], f[2], g, true)
      requeued = requeued + 1
      wake(f[1])
    end
  end
  redis.call('DEL', P .. 'run:' .. b)
  redis.call('PEXPIRE', P .. 'inbox:' .. b, INBOX_GRACE_MS)
  for _, w in ipairs(redis.call('SMEMBERS', P .. 'wset:' .. b)) do redis.call('HDEL', P .. 'workers', w) end
  redis.call('DEL', P .. 'wset:' .. b)
  redis.call('HDEL', P .. 'brokers', b)
  return requeued
end

local function queues()
  local snap = {}
  for _, i in ipairs(redis.call('SMEMBERS', P .. 'intents')) do
    local depth = tonumber(redis.call('GET', P .. 'depth:' .. i) or '0')
    if depth > 0 then
      local users = {}
      for _, u in ipairs(redis.call('LRANGE', P .. 'rr:' .. i, 0, -1)) do
        users[u] = redis.call('LLEN', P .. 'uq:' .. i .. ':' .. u)
      end
      snap[i] = {depth = depth, users = users}
    end
  end
  return snap
end

local run = {}

-- A new intent sent while its journal row is being written (op.hold): no
-- broker may start it before that row exists. If its queue is empty and a free
-- worker of this broker serves it, it is taken for that worker at once (what
-- a push and a pop would do), and this broker starts it once the row is
-- written; otherwise it is held out of every queue ('h') until `confirm`.
-- Either way it is this broker's (run:me) until then: `drop` takes it back if
-- the journal refused it, and a reap queues it again like a running job.
local function hold(op)
  local key = P .. 'job:' .. op.g
  if tonumber(redis.call('GET', P .. 'depth:' .. op.i) or '0') == 0 then
    enqueue(op.i, op.u, op.g, false)
    local popped, hungry = pop_for(op.i, op.offer)
    if #popped > 0 then return {pos = 0, popped = popped, hungry = hungry} end -- the queue held only this one
    unqueue(op.i, op.u, op.g)
  end
  redis.call('HSET', key, 'state', 'h', 'broker', me)
  redis.call('SADD', P .. 'run:' .. me, op.g)
  return {held = true}
end

-- A new intent (or one the journal holds that no broker has): queue it, then
-- hand this broker's free workers what the round robin gives them.
function run.push(op)
  local key = P .. 'job:' .. op.g
  if redis.call('EXISTS', key) == 1 then
    if op.hold then return {exists = true} end -- the journal's answer decides what it is
    if op.home ~= '' then redis.call('HSET', key, 'home', op.home) end
    return {exists = true}
  end
  if op.ulimit and redis.call('LLEN', P .. 'uq:' .. op.i .. ':' .. op.u) >= op.ulimit then
    return {full = op.ulimit, scope = 'user'}
  end
  if op.limit and tonumber(redis.call('GET', P .. 'depth:' .. op.i) or '0') >= op.limit then
    return {full = op.limit, scope = 'realm'}
  end
  redis.call('HSET', key, 'q', blob(op, 0), 'user', op.u, 'intent', op.i, 'model', op.m, 'price', op.p,
             'home', op.home, 'attempts', 0, 'tried', '[]', 't', op.t or now)
  redis.call('SADD', P .. 'live:' .. op.u, op.g)
  if op.hold then return hold(op) end
  enqueue(op.i, op.u, op.g, false)
  local pos = position(op.i, op.u)
  local popped, hungry = pop_for(op.i, op.offer)
  if redis.call('HGET', key, 'state') == 'q' then wake(op.i) end
  return {pos = pos, popped = popped, hungry = hungry}
end

-- A held intent's journal row is written: into the queue with it, as a push.
function run.confirm(op)
  local key = P .. 'job:' .. op.g
  local f = redis.call('HMGET', key, 'state', 'intent', 'user', 'broker')
  if not f[1] then return {gone = true} end -- Redis lost it meanwhile: push it again
  if f[1] ~= 'h' or f[4] ~= me then return {} end -- reaped meanwhile: queued already
  redis.call('SREM', P .. 'run:' .. me, op.g)
  enqueue(f[2], f[3], op.g, false)
  local pos = position(f[2], f[3])
  local popped, hungry = pop_for(f[2], op.offer)
  if redis.call('HGET', key, 'state') == 'q' then wake(f[2]) end
  return {pos = pos, popped = popped, hungry = hungry}
end

-- The journal refused a held intent (it knew the guid, or did not answer):
-- it goes, unless a client on another broker claimed it meanwhile (that
-- broker found it in the journal): then it is queued for that one.
function run.drop(op)
  local key = P .. 'job:' .. op.g
  local f = redis.call('HMGET', key, 'state', 'broker', 'user', 'home', 'intent')
  if not f[1] or f[2] ~= me or f[1] == 'q' then return {} end
  redis.call('SREM', P .. 'run:' .. me, op.g)
  if f[4] ~= '' and f[4] ~= me then
    enqueue(f[5], f[3], op.g, true)
    wake(f[5])
    return {}
  end
  forget(op.g, f[3])
  return {}
end

function run.pull(op)
  local popped, hungry = pop_for(op.i, op.offer)
  -- Told of work it cannot take (its workers filled since it said it was
  -- hungry): the next broker waiting for this intent is told instead.
  if #popped == 0 and tonumber(redis.call('GET', P .. 'depth:' .. op.i) or '0') > 0 then wake(op.i) end
  return {popped = popped, hungry = hungry}
end

-- An attempt failed here: back to the front of its user's queue.
function run.requeue(op)
  local key = P .. 'job:' .. op.g
  local f = redis.call('HMGET', key, 'intent', 'user', 'broker')
  redis.call('SREM', P .. 'run:' .. me, op.g)
  if not f[1] or f[3] ~= me then return {} end
  redis.call('HSET', key, 'attempts', op.attempts, 'tried', op.tried)
  enqueue(f[1], f[2], op.g, true)
  -- Its worker failed, or the offer a push popped it for was stale: this
  -- broker waits no longer (its next pull says what it has).
  redis.call('LREM', P .. 'hungry:' .. f[1], 0, me)
  redis.call('HDEL', P .. 'offer:' .. f[1], me)
  wake(f[1])
  return {}
end

-- The intent ended here (its outcome is stored). Its client listens on the
-- broker in `home`; if that is not the one this broker sent the outcome to,
-- send it there too.
function run.done(op)
  local key = P .. 'job:' .. op.g
  local f = redis.call('HMGET', key, 'home', 'user', 'state', 'intent')
  redis.call('SREM', P .. 'run:' .. me, op.g)
  if not f[2] then return {} end
  if f[3] == 'q' then unqueue(f[4], f[2], op.g) end
  forget(op.g, f[2])
  if f[1] ~= '' and f[1] ~= op.sent and f[1] ~= me then tell(f[1], 'g:' .. op.g, blob(op, 0)) end
  return {}
end

-- Take a queued intent out; one running elsewhere is ended by its broker.
function run.withdraw(op)
  local job = described(op.g)
  if not job then return {gone = true} end
  if job.state == 'r' then
    if job.broker == me or not alive(job.broker) then return {running = job.broker} end
    tell(job.broker, 'c:end', cjson.encode({g = op.g, ending = op.ending}))
    return {running = job.broker}
  end
  unqueue(job.intent, job.user, op.g)
  forget(op.g, job.user)
  return {removed = job}
end

-- A client resubmits a guid live somewhere: its stream comes to this broker now.
-- The job's stream goes to this broker from now on: the broker running it
-- sends there, the broker its client left forgets it.
local function move_home(g, state, broker, old, op)
  redis.call('HSET', P .. 'job:' .. g, 'home', me)
  if state == 'r' and broker ~= me then
    tell(broker, 'c:rehome', cjson.encode({g = g, home = me, run = op.run, offset = op.offset}))
  end
  if old ~= '' and old ~= me and old ~= broker then tell(old, 'c:moved', g) end
end

function run.claim(op)
  local job = described(op.g)
  if not job then return {} end
  if job.user == op.u then move_home(op.g, job.state, job.broker, job.home, op) end
  return {job = job}
end

function run.rehome(op)
  local f = redis.call('HMGET', P .. 'job:' .. op.g, 'state', 'broker', 'home')
  if f[1] then move_home(op.g, f[1], f[2], f[3], op) end
  return {}
end

-- Frames for clients on another broker: one stream entry per guid.
function run.fwd(op)
  for k, g in ipairs(op.gs) do tell(op.to, 'g:' .. g, blob(op, k - 1)) end
  return {}
end

-- Queued intents that waited longer than op.limit seconds, taken out (by one broker at a time).
function run.expire(op)
  local taken = {}
  -- one scan a second is enough for the realm, whichever broker asks
  if not redis.call('SET', P .. 'expiring', me, 'NX', 'PX', 1000) then return {jobs = taken} end
  for _, i in ipairs(redis.call('SMEMBERS', P .. 'intents')) do
    for _, u in ipairs(redis.call('LRANGE', P .. 'rr:' .. i, 0, -1)) do
      for _, g in ipairs(redis.call('LRANGE', P .. 'uq:' .. i .. ':' .. u, 0, -1)) do
        local w = tonumber(redis.call('HGET', P .. 'job:' .. g, 'w') or now)
        if now - w > op.limit then
          taken[#taken + 1] = described(g)
          unqueue(i, u, g)
          forget(g, u)
        end
      end
    end
  end
  return {jobs = taken}
end

-- A job running here: one this broker started without asking (its queue was
-- empty and a worker here free, broker/engine/queue.py), or one Redis lost
-- (restarted without its data), or that another broker queued again from
-- the journal meanwhile.
function run.assert(op)
  local key = P .. 'job:' .. op.g
  local f = redis.call('HMGET', key, 'state', 'intent', 'user')
  if f[1] == 'q' then
    unqueue(f[2], f[3], op.g)
    redis.call('HSET', key, 'state', 'r', 'broker', me)
    redis.call('SADD', P .. 'run:' .. me, op.g)
    return {}
  end
  if f[1] then return {} end
  redis.call('HSET', key, 'q', blob(op, 0), 'user', op.u, 'intent', op.i, 'model', op.m, 'price', op.p,
             'home', op.home, 'attempts', op.attempts, 'tried', op.tried, 't', op.t, 'state', 'r',
             'broker', me, 'w', now)
  redis.call('SADD', P .. 'live:' .. op.u, op.g)
  redis.call('SADD', P .. 'run:' .. me, op.g)
  return {}
end

-- Which of op.gs Redis has no job for (a broker's reconcile with the journal).
function run.missing(op)
  local gone = {}
  for _, g in ipairs(op.gs) do
    if redis.call('EXISTS', P .. 'job:' .. g) == 0 then gone[#gone + 1] = g end
  end
  return {gs = gone}
end

-- Whether this broker may do a realm-wide chore now (one broker per period).
function run.lock(op)
  return {got = redis.call('SET', P .. 'lock:' .. op.name, me, 'NX', 'PX', op.ms) ~= false}
end

function run.workers(op)
  for id, desc in pairs(op.set) do
    redis.call('HSET', P .. 'workers', id, desc)
    redis.call('SADD', P .. 'wset:' .. me, id)
  end
  for _, id in ipairs(op.del) do
    redis.call('HDEL', P .. 'workers', id)
    redis.call('SREM', P .. 'wset:' .. me, id)
  end
  return {}
end

-- Every other broker of the realm gets the blob under `field` (bans, accounts, broadcasts).
function run.tell_others(op)
  for _, b in ipairs(redis.call('HKEYS', P .. 'brokers')) do
    if b ~= me then tell(b, op.field, blob(op, 0)) end
  end
  return {}
end

-- A user's submit limits, realm-wide (broker/engine/limits.py): a live guid
-- (resubmitted) passes; then the user's live intents, then its requests in
-- the last `window` seconds.
function run.limit(op)
  if redis.call('EXISTS', P .. 'job:' .. op.g) == 1 then return {ok = true} end
  if op.concurrent > 0 then
    local live = P .. 'live:' .. op.u
    for _, g in ipairs(redis.call('SMEMBERS', live)) do
      if redis.call('EXISTS', P .. 'job:' .. g) == 0 then redis.call('SREM', live, g) end
    end
    local n = redis.call('SCARD', live)
    if n >= op.concurrent then return {refuse = 'concurrent', live = n} end
  end
  if op.rate > 0 then
    local key = P .. 'rate:' .. op.u
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now - op.window)
    if redis.call('ZCARD', key) >= op.rate then
      local oldest = tonumber(redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')[2])
      return {refuse = 'rate', wait = op.window - (now - oldest)}
    end
    redis.call('ZADD', key, now, op.g)
    redis.call('PEXPIRE', key, math.ceil(op.window * 1000))
  end
  return {ok = true}
end

-- A user's intents queued or running anywhere (live:U keeps them).
function run.live(op)
  return {gs = redis.call('SMEMBERS', P .. 'live:' .. op.u)}
end

function run.tell(op)
  tell(op.to, op.field, blob(op, 0))
  return {}
end

-- Presence: this broker is alive for op.ttl ms more. With op.reap (it has
-- been connected long enough to know), brokers that stopped beating are
-- reaped: their running intents go back to the front of the queue. Returns
-- what every broker shows of the realm.
function run.beat(op)
  local epoch = redis.call('GET', P .. 'epoch')
  if not epoch then
    epoch = op.epoch
    redis.call('SET', P .. 'epoch', epoch)
  end
  local known = redis.call('HEXISTS', P .. 'brokers', me) == 1
  redis.call('SET', P .. 'hb:' .. me, '1', 'PX', op.ttl)
  redis.call('PERSIST', P .. 'inbox:' .. me)
  redis.call('HSET', P .. 'brokers', me, blob(op, 0))
  local reaped = {}
  if op.reap then
    for _, b in ipairs(redis.call('HKEYS', P .. 'brokers')) do
      if b ~= me and not alive(b) then reaped[b] = reap(b) end
    end
  end
  local brokers = redis.call('HGETALL', P .. 'brokers')
  local workers = redis.call('HGETALL', P .. 'workers')
  local b, w = {}, {}
  for k = 1, #brokers, 2 do b[#b + 1] = give(brokers[k + 1]) end
  for k = 1, #workers, 2 do w[#w + 1] = give(workers[k + 1]) end
  return {epoch = epoch, known = known, reaped = reaped, brokers = b, workers = w, queues = queues()}
end

-- A broker that stops cleanly: its running intents go back to the queue now.
function run.leave(op)
  redis.call('DEL', P .. 'hb:' .. me)
  return {requeued = reap(me)}
end

local results = {}
for k, op in ipairs(ops) do results[k] = run[op.op](op) end
out[1] = cjson.encode(results)
return out
