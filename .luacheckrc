-- luacheck's settings for the Lua under src/ (`.ci/luacheck` runs it; see `.ci/run`).
std = "lua51"
-- What Redis gives every script and every function library.
read_globals = { "redis", "cjson", "cmsgpack", "bit", "struct" }
-- The plain scripts (EVAL) get KEYS and ARGV as globals. In the Functions library they are
-- locals that each call sets, so they are not globals there.
files["src/store/redis/scripts"] = { read_globals = { "KEYS", "ARGV" } }
