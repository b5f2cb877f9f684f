-- The swarm store of protocol.txt §1 as one Redis function, so every operation is atomic on the
-- server and a receive batch is one pipeline of FCALL calls (one round trip). It keeps the
-- same rules as the in-memory store (store/memory): keys, caps, each host's share, expiry.
-- Longer than most modules: Redis loads one library as one unit, and the bookkeeping (rows,
-- totals, host shares) is one invariant, as in store/memory/mod.rs.
--
-- ARGV: op, prefix, ttl_ms, max_files, max_peers, max_peers_per_file, max_rows, max_bits,
--       quota_files, quota_rows, quota_ports, quota_peers_per_file, quota_bits, the request's
--       transfer report (event, up, down, left; '' when absent), then the op's.
-- Reply: {'ok', ...} or {'err', kind, detail, detail}. Errors of Redis itself (a key of the
-- wrong type) are caught and answered as {'err', 'unavailable', message}.
--
-- Keys under the prefix P (file names have no whitespace or control characters, addresses are
-- `ip:port` / `[ip6]:port`, so "\n" separates them unambiguously):
--   P files           zset, score 0: every file name (the catalogue, in name order)
--   P f:<name>        hash: size chunk id chunks creator seeders [completed up down]
--   P s:<name>        zset, score 0: the swarm's addresses (the order listings page through)
--   P h:<name>        hash addr -> S (seeder) | E (joined, holds nothing) | <count> (partial)
--   P b:<name>\n<addr> bitmap of a partial peer's chunks (SETBIT order: chunk 0 = MSB)
--   P m:<name>        hash host -> members of that host in the swarm
--   P t:<name>        hash addr -> "up down": the byte counters of a row already counted
--   P c:<name>        set: who completed a download ("k<key>" or "a<addr>"), each once
--   P p:<addr>        hash: host [key] [udp]
--   P pf:<addr>       set: the files the peer is in
--   P keys            hash key -> addr
--   P live            zset addr -> last-seen time (ms, Redis clock); expiry pops its front
--   P u:<host>        hash: files rows ports bits (what the host holds)
--   P n               hash: files peers rows bits (totals, for the caps)
--   P cat             hash name -> "size chunks seeders leechers completed up down": each
--                     file's catalogue line,
--                     kept whenever its counts change, so a catalogue page is two calls
--
-- Every redis.call costs about a microsecond and a half of Lua-to-Redis conversion whatever the
-- command does, far more than most of these commands themselves: the operations are written to
-- make few calls, not few keys.

-- Loaded once as a Redis function library (FUNCTION LOAD: the tracker adds the `#!lua name=`
-- line before this text and the register_function call after it), so a call runs only `entry`,
-- not this whole file. The settings of the call are set by `entry` before any helper runs.
local ARGV, P, TTL, MAX_FILES, MAX_PEERS, MAX_PPF, MAX_ROWS, MAX_BITS, Q, T
local A = 18
-- Counters and figures stop at 2^53 - 1, where Lua numbers stop being exact (protocol.txt §1.2).
local MAX_COUNTER = 9007199254740991
local FILES, PEER_KEYS, LIVE, TOTALS, CATALOGUE

local function configure(args)
    ARGV = args
    P = ARGV[2]
    TTL = tonumber(ARGV[3])
    MAX_FILES, MAX_PEERS, MAX_PPF, MAX_ROWS, MAX_BITS =
        tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
    Q = {
        files = tonumber(ARGV[9]), rows = tonumber(ARGV[10]), ports = tonumber(ARGV[11]),
        ppf = tonumber(ARGV[12]), bits = tonumber(ARGV[13]),
    }
    FILES, PEER_KEYS, LIVE, TOTALS, CATALOGUE =
        P .. 'files', P .. 'keys', P .. 'live', P .. 'n', P .. 'cat'
    -- The texts are kept for messages (tostring would print big numbers in e-notation).
    T = { event = ARGV[14], up = ARGV[15], down = ARGV[16], left = ARGV[17] }
    T.any = T.event ~= '' or T.up ~= '' or T.down ~= '' or T.left ~= ''
end
local function kfile(n) return P .. 'f:' .. n end
local function kswarm(n) return P .. 's:' .. n end
local function khold(n) return P .. 'h:' .. n end
local function kbits(n, a) return P .. 'b:' .. n .. '\n' .. a end
local function kmembers(n) return P .. 'm:' .. n end
local function kpeer(a) return P .. 'p:' .. a end
local function kpfiles(a) return P .. 'pf:' .. a end
local function kusage(h) return P .. 'u:' .. h end
local function kcounted(n) return P .. 't:' .. n end
local function kcompleters(n) return P .. 'c:' .. n end

local function fail(kind, a, b) error({ store = kind, a = a, b = b }) end

local function now_ms()
    local t = redis.call('TIME')
    return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function num(v)
    if v == false or v == nil then return 0 end
    local n = tonumber(v)
    if n == nil then fail('unavailable', 'not a number where one was expected: ' .. tostring(v)) end
    return n
end

-- Adds n to a counter field, dropping the field at zero (an empty hash disappears).
local function bump(key, field, n)
    if n == 0 then return end
    if redis.call('HINCRBY', key, field, n) <= 0 then redis.call('HDEL', key, field) end
end

local function usage(h)
    local v = redis.call('HMGET', kusage(h), 'files', 'rows', 'ports', 'bits')
    return { files = num(v[1]), rows = num(v[2]), ports = num(v[3]), bits = num(v[4]) }
end

local function charge(h, u, sign)
    for _, f in ipairs({ 'files', 'rows', 'ports', 'bits' }) do
        bump(kusage(h), f, sign * (u[f] or 0))
    end
end

-- Quotas::check: the first quota a host holding `now` would exceed by taking `more`.
local function check_quota(h, more)
    local now = usage(h)
    local function over(f) return (more[f] or 0) > 0 and now[f] + more[f] > Q[f] end
    if over('files') then fail('quota', 'files created') end
    if over('rows') then fail('quota', 'rows') end
    if over('ports') then fail('quota', 'serving addresses') end
    if over('bits') then fail('quota', 'bitfield memory') end
end

local function total(f) return num(redis.call('HGET', TOTALS, f)) end

local function file_chunks(n) return num(redis.call('HGET', kfile(n), 'chunks')) end
local function bitfield_cost(chunks) return math.ceil(chunks / 64) * 8 end
-- `chunks`: the file's chunk count when the caller has it (saves a lookup).
local function holding_cost(n, holding, chunks)
    if holding == 'S' or holding == 'E' or not holding then return 0 end
    return bitfield_cost(chunks or file_chunks(n))
end

local function usage_of(addr)
    local files = redis.call('SMEMBERS', kpfiles(addr))
    local bits = 0
    for _, n in ipairs(files) do bits = bits + holding_cost(n, redis.call('HGET', khold(n), addr)) end
    return { files = 0, rows = #files, ports = 1, bits = bits }
end

-- Brings the catalogue line of n up to date (after its counts changed), or drops it with the
-- file.
local function relist(n)
    local f = redis.call('HMGET', kfile(n), 'size', 'chunks', 'seeders', 'completed', 'up', 'down')
    if not f[1] then
        redis.call('HDEL', CATALOGUE, n)
        return
    end
    local seeders = num(f[3])
    local leechers = redis.call('ZCARD', kswarm(n)) - seeders
    redis.call('HSET', CATALOGUE, n, f[1] .. ' ' .. f[2] .. ' ' .. seeders .. ' ' .. leechers ..
        ' ' .. (f[4] or '0') .. ' ' .. (f[5] or '0') .. ' ' .. (f[6] or '0'))
end

-- The row's counted "up down", as numbers and as texts.
local function counted(n, addr)
    local base = redis.call('HGET', kcounted(n), addr)
    if not base then return 0, 0, '0', '0' end
    local up, down = string.match(base, '^(%d+) (%d+)$')
    if not up then fail('unavailable', 'counted bytes of ' .. addr .. ' in ' .. n .. ': ' .. base) end
    return tonumber(up), tonumber(down), up, down
end

-- FileEntry::check_transfer: refuses a report that cannot be counted before anything of its
-- request changes. `who`'s row is under its key's address when the key moves it.
local function check_transfer(n, who)
    if not T.any then return end
    local size = redis.call('HGET', kfile(n), 'size')
    if not size then return end
    if T.left ~= '' and tonumber(T.left) > num(size) then
        fail('counters', 'left=' .. T.left .. ' is more than the ' .. size .. ' bytes of ' .. n)
    end
    if T.event == 'started' then return end
    local addr = who.addr
    if who.key ~= '' then addr = redis.call('HGET', PEER_KEYS, who.key) or who.addr end
    local up, down, up_text, down_text = counted(n, addr)
    for _, c in ipairs({ { 'up', T.up, up, up_text }, { 'down', T.down, down, down_text } }) do
        if c[2] ~= '' and tonumber(c[2]) < c[3] then
            fail('counters', c[1] .. '=' .. c[2] .. ' is less than the ' .. c[4] ..
                ' this peer reported before (counters restart only with event=started)')
        end
    end
end

-- Adds n to a figure of the file, stopping at MAX_COUNTER.
local function add_figure(n, field, by)
    if by <= 0 then return false end
    local now = math.min(num(redis.call('HGET', kfile(n), field)) + by, MAX_COUNTER)
    redis.call('HSET', kfile(n), field, string.format('%d', now))
    return true
end

-- FileEntry::record_transfer: adds a checked report of who's row to the figures.
local function record_transfer(n, who)
    if not T.any then return end
    local changed = false
    if T.up ~= '' or T.down ~= '' then
        local base_up, base_down = counted(n, who.addr)
        local up = (T.up ~= '') and tonumber(T.up) or base_up
        local down = (T.down ~= '') and tonumber(T.down) or base_down
        if T.event ~= 'started' then
            changed = add_figure(n, 'up', up - base_up)
            changed = add_figure(n, 'down', down - base_down) or changed
        end
        redis.call('HSET', kcounted(n), who.addr, string.format('%d %d', up, down))
    elseif T.event == 'started' then
        redis.call('HDEL', kcounted(n), who.addr)
    end
    if T.event == 'completed' then
        local id = (who.key ~= '') and ('k' .. who.key) or ('a' .. who.addr)
        if redis.call('SISMEMBER', kcompleters(n), id) == 0 then
            if redis.call('SCARD', kcompleters(n)) < MAX_PPF then
                redis.call('SADD', kcompleters(n), id)
            end
            changed = add_figure(n, 'completed', 1)
        end
    end
    if changed then relist(n) end
end

local function remove_row(n, addr, host)
    local holding = redis.call('HGET', khold(n), addr)
    if not holding then return end
    local cost = holding_cost(n, holding)
    redis.call('HDEL', khold(n), addr)
    redis.call('HDEL', kcounted(n), addr)
    redis.call('ZREM', kswarm(n), addr)
    redis.call('DEL', kbits(n, addr))
    if holding == 'S' then redis.call('HINCRBY', kfile(n), 'seeders', -1) end
    bump(kmembers(n), host, -1)
    bump(TOTALS, 'rows', -1)
    bump(TOTALS, 'bits', -cost)
    charge(host, { rows = 1, bits = cost }, -1)
    if redis.call('ZCARD', kswarm(n)) == 0 then
        local creator = redis.call('HGET', kfile(n), 'creator')
        redis.call('DEL', kfile(n), kswarm(n), khold(n), kmembers(n), kcounted(n), kcompleters(n))
        redis.call('ZREM', FILES, n)
        bump(TOTALS, 'files', -1)
        if creator then charge(creator, { files = 1 }, -1) end
    end
    relist(n)
end

-- Removes addr from one swarm (`only`), or from all swarms and forgets it.
local function remove_peer(addr, only)
    local peer = redis.call('HMGET', kpeer(addr), 'host', 'key')
    local host = peer[1]
    if not host then return end
    local names
    if only then
        if redis.call('SREM', kpfiles(addr), only) == 0 then return end
        names = { only }
    else
        names = redis.call('SMEMBERS', kpfiles(addr))
    end
    for _, n in ipairs(names) do remove_row(n, addr, host) end
    if not only then
        redis.call('DEL', kpeer(addr), kpfiles(addr))
        redis.call('ZREM', LIVE, addr)
        if peer[2] then redis.call('HDEL', PEER_KEYS, peer[2]) end
        charge(host, { ports = 1 }, -1)
        bump(TOTALS, 'peers', -1)
    end
end

local function forget_if_empty(addr)
    if redis.call('EXISTS', kpeer(addr)) == 1 and redis.call('SCARD', kpfiles(addr)) == 0 then
        remove_peer(addr, nil)
    end
end

local function check_rehome(addr, host)
    local old = redis.call('HGET', kpeer(addr), 'host')
    if not old or old == host then return end
    check_quota(host, usage_of(addr))
    for _, n in ipairs(redis.call('SMEMBERS', kpfiles(addr))) do
        if num(redis.call('HGET', kmembers(n), host)) >= Q.ppf then
            fail('quota', 'peers in one swarm')
        end
    end
end

local function rehome(addr, host)
    local old = redis.call('HGET', kpeer(addr), 'host')
    if not old or old == host then return end
    local u = usage_of(addr)
    redis.call('HSET', kpeer(addr), 'host', host)
    charge(old, u, -1)
    charge(host, u, 1)
    for _, n in ipairs(redis.call('SMEMBERS', kpfiles(addr))) do
        bump(kmembers(n), old, -1)
        bump(kmembers(n), host, 1)
    end
end

-- An address change of one key: every row of `old` moves to `new` (a keyless peer there is
-- taken over; the caller refused a keyed one).
local function move_peer(old, new)
    remove_peer(new, nil)
    if redis.call('EXISTS', kpeer(old)) == 0 then return end
    for _, n in ipairs(redis.call('SMEMBERS', kpfiles(old))) do
        local holding = redis.call('HGET', khold(n), old)
        if holding then
            redis.call('HDEL', khold(n), old)
            redis.call('HSET', khold(n), new, holding)
            redis.call('ZREM', kswarm(n), old)
            redis.call('ZADD', kswarm(n), 0, new)
            if redis.call('EXISTS', kbits(n, old)) == 1 then
                redis.call('RENAME', kbits(n, old), kbits(n, new))
            end
            local base = redis.call('HGET', kcounted(n), old)
            if base then
                redis.call('HDEL', kcounted(n), old)
                redis.call('HSET', kcounted(n), new, base)
            end
        end
    end
    redis.call('RENAME', kpeer(old), kpeer(new))
    if redis.call('EXISTS', kpfiles(old)) == 1 then redis.call('RENAME', kpfiles(old), kpfiles(new)) end
    local key = redis.call('HGET', kpeer(new), 'key')
    if key then redis.call('HSET', PEER_KEYS, key, new) end
    local seen = redis.call('ZSCORE', LIVE, old)
    redis.call('ZREM', LIVE, old)
    if seen then redis.call('ZADD', LIVE, seen, new) end
end

-- who = { addr, key ('' = none), host, udp ('' = keep) }. Makes `who` the identity at its
-- address and refreshes it (store/memory's resolve); returns whether the peer is known now and
-- whether rows moved (a key's address change, which may have removed a file). The common case,
-- a known peer announcing from its host with its key, costs two calls.
local function resolve(who, now, create)
    local holder = redis.call('HMGET', kpeer(who.addr), 'host', 'key', 'udp')
    if holder[1] and holder[2] and holder[2] ~= who.key then fail('forbidden', who.addr) end
    local moved = false
    -- A key already filed at this address needs no lookup: keys and peers agree.
    if who.key ~= '' and holder[2] ~= who.key then
        local old = redis.call('HGET', PEER_KEYS, who.key)
        if old and old ~= who.addr then
            check_rehome(old, who.host)
            move_peer(old, who.addr)
            moved = true
            holder = redis.call('HMGET', kpeer(who.addr), 'host', 'key', 'udp')
        end
    end
    if not holder[1] then
        if not create then return false, moved end
        if total('peers') >= MAX_PEERS then fail('capacity', 'peers') end
        check_quota(who.host, { ports = 1 })
        redis.call('HSET', kpeer(who.addr), 'host', who.host)
        charge(who.host, { ports = 1 }, 1)
        bump(TOTALS, 'peers', 1)
        holder = { who.host, false, false }
    end
    if holder[1] ~= who.host then
        check_rehome(who.addr, who.host)
        rehome(who.addr, who.host)
    end
    if who.key ~= '' and not holder[2] then
        redis.call('HSET', kpeer(who.addr), 'key', who.key)
        redis.call('HSET', PEER_KEYS, who.key, who.addr)
    end
    if who.udp ~= '' and who.udp ~= holder[3] then
        redis.call('HSET', kpeer(who.addr), 'udp', who.udp)
    end
    redis.call('ZADD', LIVE, 'GT', now, who.addr)
    return true, moved
end

local function check_new_row(n, exists, host)
    if total('rows') >= MAX_ROWS then fail('capacity', 'rows') end
    if exists then
        if redis.call('ZCARD', kswarm(n)) >= MAX_PPF then fail('capacity', 'peers per file') end
        if num(redis.call('HGET', kmembers(n), host)) >= Q.ppf then fail('quota', 'peers in one swarm') end
    end
    check_quota(host, { rows = 1 })
end

local function check_bitfield(host, bytes)
    if bytes > MAX_BITS - total('bits') then fail('capacity', 'bitfield memory') end
    check_quota(host, { bits = bytes })
end

local function insert_row(n, addr, holding, host)
    local cost = holding_cost(n, holding)
    redis.call('HSET', khold(n), addr, holding)
    redis.call('ZADD', kswarm(n), 0, addr)
    if holding == 'S' then redis.call('HINCRBY', kfile(n), 'seeders', 1) end
    bump(kmembers(n), host, 1)
    redis.call('SADD', kpfiles(addr), n)
    bump(TOTALS, 'rows', 1)
    bump(TOTALS, 'bits', cost)
    charge(host, { rows = 1, bits = cost }, 1)
    relist(n)
end

-- `old`: the row's holding now (the caller read it); `chunks`: the file's chunk count.
local function set_holding(n, addr, holding, host, old, chunks)
    if holding == old then return end
    local delta = holding_cost(n, holding, chunks) - holding_cost(n, old, chunks)
    redis.call('HSET', khold(n), addr, holding)
    if holding == 'S' and old ~= 'S' then redis.call('HINCRBY', kfile(n), 'seeders', 1) end
    if old == 'S' and holding ~= 'S' then redis.call('HINCRBY', kfile(n), 'seeders', -1) end
    if holding == 'S' or holding == 'E' then redis.call('DEL', kbits(n, addr)) end
    bump(TOTALS, 'bits', delta)
    charge(host, { bits = delta }, 1)
    if (holding == 'S') ~= (old == 'S') then relist(n) end
end

-- Sets the chunks of `ranges` ("s-e,s-e") in a bitmap: whole bytes at once, the ragged ends
-- bit by bit.
local function set_chunks(key, ranges)
    for s, e in string.gmatch(ranges, '(%d+)-(%d+)') do
        s, e = tonumber(s), tonumber(e)
        local first_full, last_full = math.ceil(s / 8), math.floor((e + 1) / 8) - 1
        if first_full > last_full then
            for i = s, e do redis.call('SETBIT', key, i, 1) end
        else
            for i = s, first_full * 8 - 1 do redis.call('SETBIT', key, i, 1) end
            redis.call('SETRANGE', key, first_full, string.rep('\255', last_full - first_full + 1))
            for i = (last_full + 1) * 8, e do redis.call('SETBIT', key, i, 1) end
        end
    end
end

local function who_at(i)
    return { addr = ARGV[i], key = ARGV[i + 1], host = ARGV[i + 2], udp = ARGV[i + 3] }
end

local function summary(n)
    local f = redis.call('HMGET', kfile(n), 'size', 'chunk', 'id', 'seeders', 'completed', 'up', 'down')
    if not f[1] then fail('file', n) end
    local members = redis.call('ZCARD', kswarm(n))
    return { f[1], f[2], f[3], num(f[4]), members, f[5] or '0', f[6] or '0', f[7] or '0' }
end

-- Bytes of a bitmap read per call while listing (4096 chunks).
local WINDOW = 512

-- The chunk ranges of a partial peer as the answer spells them ("0-9,12,20-21"), or false when
-- they would not fit in 200 bytes of listing (then it is listed by count). The bitmap is read in
-- windows of WINDOW bytes, only as far as the ranges go, and searched in Lua a byte at a time
-- (string.find skips whole bytes of 0x00 or 0xff): usually one call per peer. Bits past the
-- stored string read as clear, so a bitmap cut short lists what it holds.
local MAX_LISTED_RANGES_BYTES = 200
-- The bitmap being listed: its key and the windows read of it so far.
local listing_key, listing_windows
local function window(w)
    local bytes = listing_windows[w]
    if bytes == nil then
        bytes = redis.call('GETRANGE', listing_key, w * WINDOW, (w + 1) * WINDOW - 1)
        listing_windows[w] = bytes
    end
    return bytes
end
-- MASK[k]: the bit of chunk k of a byte (chunk 0 is the top bit, as SETBIT numbers them).
local MASK = { [0] = 128, 64, 32, 16, 8, 4, 2, 1 }
-- The first chunk at or after pos (below chunks) whose bit is set (want_one) or clear;
-- `chunks` if none.
local function find(pos, want_one, chunks)
    while pos < chunks do
        local w = math.floor(pos / (WINDOW * 8))
        local bytes, base = window(w), w * WINDOW * 8
        local i = pos - base
        local at = math.floor(i / 8) + 1
        if at > #bytes then
            if want_one then return chunks end
            return pos
        end
        -- (`bit` exists only while a call runs, not while the library loads.)
        local set = bit.band(string.byte(bytes, at), MASK[i % 8]) ~= 0
        if set == want_one then return pos end
        if i % 8 == 0 then
            local next_byte = string.find(bytes, want_one and '[^%z]' or '[^\255]', at)
            if not next_byte then
                pos = base + #bytes * 8
            elseif next_byte > at then
                pos = base + (next_byte - 1) * 8
            else
                pos = pos + 1
            end
        else
            pos = pos + 1
        end
    end
    return chunks
end
local function listed_ranges(key, count, chunks)
    listing_key, listing_windows = key, {}
    local out, text_len, found, pos = {}, 0, 0, 0
    while found < count and pos < chunks do
        local s = find(pos, true, chunks)
        if s >= chunks then break end
        local e = find(s, false, chunks) - 1
        text_len = text_len + ((s == e) and 8 or 16)
        if text_len > MAX_LISTED_RANGES_BYTES then return false end
        -- As the answer spells them: a lone chunk is one number.
        out[#out + 1] = (s == e) and tostring(s) or (s .. '-' .. e)
        found = found + (e - s + 1)
        pos = e + 1
    end
    return table.concat(out, ',')
end

local ops = {}

function ops.share(now)
    local who, n = who_at(A), ARGV[A + 4]
    local size, chunk, id, chunks = ARGV[A + 5], ARGV[A + 6], ARGV[A + 7], tonumber(ARGV[A + 8])
    local f = redis.call('HMGET', kfile(n), 'size', 'chunk', 'id')
    if f[1] then
        if f[1] ~= size or f[2] ~= chunk or f[3] ~= id then fail('mismatch', n) end
    else
        if total('files') >= MAX_FILES then fail('capacity', 'files') end
        check_quota(who.host, { files = 1 })
    end
    check_transfer(n, who)
    local _, moved = resolve(who, now, true)
    local exists = f[1] ~= false
    if moved then exists = redis.call('EXISTS', kfile(n)) == 1 end
    local old = exists and redis.call('HGET', khold(n), who.addr)
    if old then
        set_holding(n, who.addr, 'S', who.host, old, chunks)
        record_transfer(n, who)
        return { 'ok' }
    end
    local ok, e = pcall(check_new_row, n, exists, who.host)
    if not ok then
        forget_if_empty(who.addr)
        error(e)
    end
    if not exists then
        redis.call('HSET', kfile(n), 'size', size, 'chunk', chunk, 'id', id, 'chunks', chunks,
            'creator', who.host, 'seeders', 0)
        redis.call('ZADD', FILES, 0, n)
        bump(TOTALS, 'files', 1)
        charge(who.host, { files = 1 }, 1)
    end
    insert_row(n, who.addr, 'S', who.host)
    record_transfer(n, who)
    return { 'ok' }
end

function ops.report(now)
    local who, n, ranges, max = who_at(A), ARGV[A + 4], ARGV[A + 5], tonumber(ARGV[A + 6])
    local recorded = redis.call('HGET', kfile(n), 'chunks')
    if not recorded then fail('file', n) end
    local chunks = num(recorded)
    if max >= chunks then fail('range', max, chunks) end
    check_transfer(n, who)
    local _, moved = resolve(who, now, true)
    if moved and redis.call('EXISTS', kfile(n)) == 0 then
        forget_if_empty(who.addr)
        fail('file', n)
    end
    local cost = bitfield_cost(chunks)
    local holding = redis.call('HGET', khold(n), who.addr)
    local key = kbits(n, who.addr)
    if holding == 'S' then
        record_transfer(n, who)
        return { 'ok' }
    end
    if holding == 'E' then
        check_bitfield(who.host, cost)
    elseif not holding then
        local ok, e = pcall(function()
            check_new_row(n, true, who.host)
            check_bitfield(who.host, cost)
        end)
        if not ok then
            forget_if_empty(who.addr)
            error(e)
        end
    end
    if not holding or holding == 'E' then redis.call('DEL', key) end
    set_chunks(key, ranges)
    -- Counted from the bitmap itself, so a count and a bitmap that disagree (a bitmap cut
    -- short or deleted by hand) heal on the next report instead of drifting further.
    local count = redis.call('BITCOUNT', key, 0, chunks - 1, 'BIT')
    local now_holding = (count >= chunks) and 'S' or tostring(count)
    if holding then
        set_holding(n, who.addr, now_holding, who.host, holding, chunks)
    else
        insert_row(n, who.addr, now_holding, who.host)
        if now_holding == 'S' then redis.call('DEL', key) end
    end
    record_transfer(n, who)
    return { 'ok' }
end

local function join(who, n, now)
    if redis.call('EXISTS', kfile(n)) == 0 then fail('file', n) end
    check_transfer(n, who)
    local _, moved = resolve(who, now, true)
    if moved and redis.call('EXISTS', kfile(n)) == 0 then
        forget_if_empty(who.addr)
        fail('file', n)
    end
    if redis.call('HEXISTS', khold(n), who.addr) == 0 then
        local ok, e = pcall(check_new_row, n, true, who.host)
        if not ok then
            forget_if_empty(who.addr)
            error(e)
        end
        insert_row(n, who.addr, 'E', who.host)
    end
    record_transfer(n, who)
    return { 'ok' }
end

function ops.join(now) return join(who_at(A), ARGV[A + 4], now) end

function ops.exit(now)
    local who, n = who_at(A), ARGV[A + 4]
    if n ~= '' then check_transfer(n, who) end
    if resolve(who, now, false) then
        -- The last counters count before the row (and its base) goes.
        if n ~= '' and redis.call('HEXISTS', khold(n), who.addr) == 1 then record_transfer(n, who) end
        remove_peer(who.addr, (n ~= '') and n or nil)
        forget_if_empty(who.addr)
    end
    return { 'ok' }
end

function ops.heartbeat(now)
    local who = who_at(A)
    if not resolve(who, now, false) then fail('peer', who.addr) end
    return { 'ok', redis.call('SCARD', kpfiles(who.addr)) }
end

function ops.touch(now)
    local addr = redis.call('HGET', PEER_KEYS, ARGV[A])
    if addr and redis.call('EXISTS', kpeer(addr)) == 1 then
        redis.call('ZADD', LIVE, 'GT', now, addr)
    end
    return { 'ok' }
end

-- Join (when an address is given) and list from `offset`, leaving out the joiner, until the
-- lines' least possible length passes `budget` bytes. Reply: ok, size, chunk, id, seeders,
-- members, the index listing stopped at (-1: the end), then index, addr, kind, value per peer
-- (kind S seeder, C count, R ranges).
function ops.peers(now)
    local n, offset, budget = ARGV[A], tonumber(ARGV[A + 1]), tonumber(ARGV[A + 2])
    local asker = nil
    if ARGV[A + 3] ~= '' then
        local who = who_at(A + 3)
        join(who, n, now)
        asker = who.addr
    end
    local head = summary(n)
    local chunks = file_chunks(n)
    local out = { 'ok', head[1], head[2], head[3], head[4], head[5], -1 }
    local used, i = 0, offset
    while true do
        local batch = redis.call('ZRANGE', kswarm(n), i, i + 63)
        if #batch == 0 then break end
        local holdings = redis.call('HMGET', khold(n), unpack(batch))
        for j, addr in ipairs(batch) do
            if addr ~= asker then
                local holding = holdings[j]
                local kind, value = 'C', 0
                if holding == 'S' then
                    kind = 'S'
                elseif holding and holding ~= 'E' then
                    value = num(holding)
                    local r = listed_ranges(kbits(n, addr), value, chunks)
                    if r and r ~= '' then kind, value = 'R', r end
                end
                -- The line's length as the answer spells it: "\n<addr> seeder|<ranges>|have=<n>".
                local line = 2 + #addr
                if kind == 'S' then
                    line = line + 6
                elseif kind == 'R' then
                    line = line + #value
                else
                    line = line + 5 + #tostring(value)
                end
                used = used + line
                if used > budget then
                    out[7] = i
                    return out
                end
                out[#out + 1] = i
                out[#out + 1] = addr
                out[#out + 1] = kind
                out[#out + 1] = value
            end
            i = i + 1
        end
    end
    return out
end

-- Reply: ok, total files, the index after the last line sent (-1: the end), then name, size,
-- chunks, seeders, leechers, completed, up, down per file.
function ops.files(now)
    local offset, budget = tonumber(ARGV[A]), tonumber(ARGV[A + 1])
    local out = { 'ok', redis.call('ZCARD', FILES), -1 }
    -- No catalogue line is shorter than 40 bytes: read no more names than a page can hold.
    local step = math.min(64, math.ceil(budget / 40))
    local used, i = 0, offset
    while true do
        local batch = redis.call('ZRANGE', FILES, i, i + step - 1)
        if #batch == 0 then break end
        local lines = redis.call('HMGET', CATALOGUE, unpack(batch))
        for j, n in ipairs(batch) do
            local line = lines[j]
            if not line then
                relist(n)
                line = redis.call('HGET', CATALOGUE, n) or '0 0 0 0 0 0 0'
            end
            local size, chunks, seeders, leechers, completed, up, down =
                string.match(line, '^(%d+) (%d+) (%d+) (%-?%d+) (%d+) (%d+) (%d+)$')
            if not size then
                -- A line of a tracker before the figures: relisted with them.
                relist(n)
                line = redis.call('HGET', CATALOGUE, n) or '0 0 0 0 0 0 0'
                size, chunks, seeders, leechers, completed, up, down =
                    string.match(line, '^(%d+) (%d+) (%d+) (%-?%d+) (%d+) (%d+) (%d+)$')
            end
            if not size then fail('unavailable', 'catalogue line of ' .. n .. ': ' .. line) end
            out[#out + 1] = n
            out[#out + 1] = size
            out[#out + 1] = chunks
            out[#out + 1] = seeders
            out[#out + 1] = leechers
            out[#out + 1] = completed
            out[#out + 1] = up
            out[#out + 1] = down
            i = i + 1
            -- The line's length as the answer spells it:
            -- "\n<name> size=<n> chunks=<n> seeders=<n> leechers=<n> completed=<n> up=<n>
            -- down=<n>". The line that passes the budget is sent too, so a page that is full
            -- is seen to be (its sink refuses it); stopping short of the budget means a filter
            -- skipped lines.
            used = used + 55 + #n + #size + #chunks + #seeders + #leechers + #completed + #up + #down
            if used > budget then
                out[3] = i
                return out
            end
        end
    end
    return out
end

function ops.query(now)
    local head = summary(ARGV[A])
    return { 'ok', head[1], head[2], head[3], head[4], head[5], head[6], head[7], head[8] }
end

function ops.punch(now)
    local n, target = ARGV[A], ARGV[A + 1]
    if redis.call('EXISTS', kfile(n)) == 0 then fail('file', n) end
    if not redis.call('ZSCORE', kswarm(n), target) then fail('peer', target) end
    local seen = redis.call('ZSCORE', LIVE, target)
    local udp = redis.call('HGET', kpeer(target), 'udp')
    if not seen or now - tonumber(seen) > TTL or not udp then fail('peer', target) end
    return { 'ok', udp }
end

-- Frees up to ARGV[A] peers silent for longer than the TTL; replies how many.
function ops.expire(now)
    local expired = redis.call('ZRANGEBYSCORE', LIVE, '-inf', '(' .. (now - TTL), 'LIMIT', 0, tonumber(ARGV[A]))
    for _, addr in ipairs(expired) do
        remove_peer(addr, nil)
        redis.call('ZREM', LIVE, addr)
    end
    return { 'ok', #expired }
end

-- The function's body: args are the op and the settings (see the first lines), then the op's.
local function entry(_, args)
    configure(args)
    local run = ops[args[1]]
    if not run then return { 'err', 'unavailable', 'unknown operation ' .. tostring(args[1]) } end
    local ok, result = pcall(run, now_ms())
    if ok then return result end
    if type(result) == 'table' and result.store then
        return { 'err', result.store, result.a or '', result.b or '' }
    end
    -- An error of Redis itself (say WRONGTYPE: a key holding something this store did not
    -- write).
    if type(result) == 'table' and result.err then return { 'err', 'unavailable', result.err } end
    return { 'err', 'unavailable', tostring(result) }
end
