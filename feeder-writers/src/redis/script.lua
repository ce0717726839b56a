-- Appends a batch's events to their streams, each at most once (see WRITERS.md, `redis`).
--
-- KEYS, three per stream s (1-based): KEYS[3s-2] the stream, KEYS[3s-1] its dedup hash
-- (event id -> "revision entry-id"), KEYS[3s] its dedup list (event ids, oldest first).
-- ARGV[1]: MAXLEN ~ of each stream (0: no trimming). ARGV[2]: ids remembered per stream.
-- Then four ARGV per event: stream number s, event id, revision, payload.
-- Returns {added, replaced, duplicates}.
local maxlen = ARGV[1]
local window = tonumber(ARGV[2])
local want = { 'stream', 'hash', 'list' }

-- Every key is checked before anything is written, so a key in the way fails the whole
-- batch and stores none of it.
for i = 1, #KEYS do
  local kind = redis.call('TYPE', KEYS[i])['ok']
  local expected = want[(i - 1) % 3 + 1]
  if kind ~= 'none' and kind ~= expected then
    return redis.error_reply('WRONGTYPE key ' .. KEYS[i] .. ' holds a ' .. kind ..
      ', not a ' .. expected)
  end
end

-- A stream that is gone (deleted by hand, or never written) forgets its ids too, so that
-- writing it anew stores everything again.
for s = 1, #KEYS, 3 do
  if redis.call('EXISTS', KEYS[s]) == 0 then
    redis.call('DEL', KEYS[s + 1], KEYS[s + 2])
  end
end

local added, replaced, duplicates = 0, 0, 0
for i = 3, #ARGV, 4 do
  local s = tonumber(ARGV[i]) * 3 - 2
  local stream, ids, order = KEYS[s], KEYS[s + 1], KEYS[s + 2]
  local id, revision, payload = ARGV[i + 1], tonumber(ARGV[i + 2]), ARGV[i + 3]
  local seen = redis.call('HGET', ids, id)
  local store, old = true, nil
  if seen then
    local space = string.find(seen, ' ', 1, true)
    if revision > tonumber(string.sub(seen, 1, space - 1)) then
      old = string.sub(seen, space + 1)
    else
      store = false
    end
  end
  if store then
    local entry
    if maxlen ~= '0' then
      entry = redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', 'event', payload)
    else
      entry = redis.call('XADD', stream, '*', 'event', payload)
    end
    redis.call('HSET', ids, id, revision .. ' ' .. entry)
    if old then
      -- A later revision of a candle replaces the earlier one.
      redis.call('XDEL', stream, old)
      replaced = replaced + 1
    else
      redis.call('RPUSH', order, id)
      added = added + 1
    end
  else
    duplicates = duplicates + 1
  end
end

-- The oldest ids beyond the window are forgotten.
for s = 1, #KEYS, 3 do
  local over = redis.call('LLEN', KEYS[s + 2]) - window
  while over > 0 do
    redis.call('HDEL', KEYS[s + 1], redis.call('LPOP', KEYS[s + 2]))
    over = over - 1
  end
end

return { added, replaced, duplicates }
