-- wrk script: POST the JSON body read from $BENCH_BODY (one fixed request, pre-encoded, so
-- the load generator spends no time building bodies).
local f = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
-- The OIP binary tensor extension: the JSON header's length, the tensors after it.
local header_length = os.getenv("BENCH_HEADER_LENGTH")
if header_length and header_length ~= "" then
  wrk.headers["Content-Type"] = "application/octet-stream"
  wrk.headers["Inference-Header-Content-Length"] = header_length
end
