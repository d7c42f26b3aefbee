-- A sampling profile of this Prosody's Lua, for bench/profile_prosody.py (not for production).
--
-- Every `bench_profile_every` VM instructions (a count hook, debug.sethook) it records the Lua stack
-- as one folded line, outermost frame first: "file:linedefined name;...". Time in C (expat, SQLite,
-- sockets) is not counted, and instructions are not seconds; what it shows is which Lua work the
-- server's interpreter is busy with. Hooks are per coroutine, so every coroutine created after the
-- module loads gets one too (Prosody 0.12 handles each session's stanzas in a util.async runner).
module:set_global()

local every = module:get_option_number("bench_profile_every", 20000)
local out = assert(module:get_option_string("bench_profile_file"), "bench_profile_file is required")
local getinfo, sethook, concat = debug.getinfo, debug.sethook, table.concat
local stacks, total = {}, 0

local function sample()
	total = total + 1
	local frames, n = {}, 0
	for level = 2, 80 do
		local info = getinfo(level, "Sn")
		if not info then break end
		n = n + 1
		frames[n] = info.short_src .. ":" .. info.linedefined .. " " .. tostring(info.name)
	end
	-- Outermost first, as folded stacks are written.
	for i = 1, n // 2 do frames[i], frames[n - i + 1] = frames[n - i + 1], frames[i] end
	local key = concat(frames, ";")
	stacks[key] = (stacks[key] or 0) + 1
end

local create = coroutine.create
coroutine.create = function(f)
	local co = create(f)
	sethook(co, sample, "", every)
	return co
end
-- The module loads inside the startup coroutine; a timer runs on the main thread, which the
-- network loop runs on.
module:add_timer(0, function() sethook(sample, "", every) end)

local function dump()
	local fh = assert(io.open(out .. ".tmp", "w"))
	fh:write("# samples ", total, " every ", every, " instructions\n")
	for key, count in pairs(stacks) do fh:write(count, " ", key, "\n") end
	fh:close()
	os.rename(out .. ".tmp", out)
end
module:add_timer(5, function() dump(); return 5 end)
module:hook_global("server-stopping", dump)
