-- wrk script: POST the JSON body read from $BENCH_BODY (one fixed request, pre-encoded, so
-- the load generator spends no time building bodies).
local f = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
