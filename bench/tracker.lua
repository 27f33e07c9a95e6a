-- wrk script for bench/tracker.sh: HTTP announces with random peers.
--
--   wrk ... -s bench/tracker.lua URL -- TORRENTS
--
-- TORRENTS = 0: every request names a new random info hash (a new swarm each time: the
-- worst case for the tracker's memory, bounded by its --max-torrents);
-- TORRENTS = N: info hashes from a pool of N, so swarms fill up (bounded by 1000 peers each
-- and --max-peers in all) and replies carry up to 50 peers.
-- Peer ids are random (`-WW0208-` + 12 characters), ports random (the tracker keys HTTP peers
-- by ip:port, so each request is a new peer), half of them seeders. No `response` callback:
-- it would make wrk buffer and parse every body; tracker.sh checks replies separately.

local torrents = 0
local alnum = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
local thread_no = 0

function setup(thread)
  thread_no = thread_no + 1
  thread:set("id", thread_no)
end

function init(args)
  torrents = tonumber(args[1] or "0") or 0
  math.randomseed(os.time() * 1000 + (id or 0) * 7919)
end

local function pct_random(n)
  local t = {}
  for i = 1, n do
    t[i] = string.format("%%%02X", math.random(0, 255))
  end
  return table.concat(t)
end

local function pool_hash(i)
  -- 20 ASCII bytes, distinct per index
  return string.format("bench-%014d", i)
end

local function peer_id()
  local t = { "-WW0208-" }
  for i = 2, 13 do
    local k = math.random(1, #alnum)
    t[i] = alnum:sub(k, k)
  end
  return table.concat(t)
end

request = function()
  local ih
  if torrents > 0 then
    ih = pool_hash(math.random(1, torrents))
  else
    ih = pct_random(20)
  end
  local left = (math.random(0, 1) == 0) and "0" or "1000"
  local path = "/announce?info_hash=" .. ih ..
    "&peer_id=" .. peer_id() ..
    "&port=" .. math.random(1024, 65535) ..
    "&uploaded=0&downloaded=0&left=" .. left ..
    "&event=started&compact=1"
  return wrk.format("GET", path)
end
