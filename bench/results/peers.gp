# Re-plot: cd to this directory, then gnuplot peers.gp (written by bench/peers.sh).
set terminal pngcairo size 1100,720 font "sans,11"
set datafile separator ","
set logscale y
set format y "%g"
set grid xtics ytics mytics lc rgb "#dddddd"
set key below vertical maxrows 2 width -1
set ylabel "latency (ms, log scale): p99 solid, p50 dashed"
sat(off, got, to) = got < 0.97 * off || to > 0
set label 1 "circled: saturated (achieved < 97% of offered, or timeouts;\nthen p99 counts completed requests only)" at graph 0.02, graph 0.95 font ",10"
# 1. HTTP
set output "http_latency.png"
set title "HTTP GET /healthz: Ringmaster (1 thread) vs nginx (1 worker), open-loop sweep\nservers on CPU 0, openloop on CPU 1, 4 s per point; latency from each request's intended start"
set xlabel "offered load (requests/s, log scale)"
set logscale x
set xrange [3571.43:168000]
set xtics ("5k" 5000, "10k" 10000, "20k" 20000, "40k" 40000, "60k" 60000, "80k" 80000, "100k" 100000, "120k" 120000)
plot "http_points.csv" skip 1 using 2:(strcol(1) eq "ringmaster" ? $6/1000 : NaN) with linespoints lw 2 pt 7 lc rgb "#1f77b4" title "Ringmaster p99",      "" skip 1 using 2:(strcol(1) eq "nginx" ? $6/1000 : NaN) with linespoints lw 2 pt 5 lc rgb "#d62728" title "nginx p99",      "" skip 1 using 2:(strcol(1) eq "ringmaster" ? $4/1000 : NaN) with linespoints lw 1 dt 2 pt 6 lc rgb "#1f77b4" title "Ringmaster p50",      "" skip 1 using 2:(strcol(1) eq "nginx" ? $4/1000 : NaN) with linespoints lw 1 dt 2 pt 4 lc rgb "#d62728" title "nginx p50",      "" skip 1 using 2:(sat($2, $3, $10) ? $6/1000 : NaN) with points pt 6 ps 3 lw 2 lc rgb "black" notitle
# 2. State
set output "state_latency.png"
set title "State compare-and-swap: Ringmaster PUT If-Match (durability async) vs Redis 7 Lua CAS (appendfsync everysec)\nclosed loop, state-bench on CPU 1, server on CPU 0, 3 s per point; point labels: connections"
set xlabel "achieved throughput (CAS operations/s)"
unset logscale x
set xtics autofreq
set format x "%.0s%c"
set xrange [0:*]
set offsets 0, graph 0.06, 0, 0
unset label 1
plot "state_points.csv" skip 1 using 4:(strcol(1) eq "ringmaster" && strcol(2) eq "async" ? $6/1000 : NaN) with linespoints lw 2 pt 7 lc rgb "#1f77b4" title "Ringmaster p99 (PUT If-Match)",      "" skip 1 using 4:(strcol(1) eq "redis" && strcol(2) eq "everysec" ? $6/1000 : NaN) with linespoints lw 2 pt 5 lc rgb "#d62728" title "Redis p99 (EVALSHA)",      "" skip 1 using 4:(strcol(1) eq "ringmaster" && strcol(2) eq "async" ? $5/1000 : NaN) with linespoints lw 1 dt 2 pt 6 lc rgb "#1f77b4" title "Ringmaster p50",      "" skip 1 using 4:(strcol(1) eq "redis" && strcol(2) eq "everysec" ? $5/1000 : NaN) with linespoints lw 1 dt 2 pt 4 lc rgb "#d62728" title "Redis p50",      "" skip 1 using 4:(strcol(2) eq "async" || strcol(2) eq "everysec" ? $6/1000 : NaN):(sprintf("%d", $3)) with labels offset char 1.2,0.6 font ",9" notitle
# 3. Gateway
set output "gateway_latency.png"
set title "POST /v1/chat/completions: through the engine to ringmaster-mock vs the mock directly, open-loop sweep\nengine and mock on CPU 0, openloop on CPU 1, 4 s per point; latency from each request's intended start"
set xlabel "offered load (requests/s, log scale)"
set logscale x
set format x "%g"
unset offsets
set label 1 "circled: saturated (achieved < 97% of offered, or timeouts;\nthen p99 counts completed requests only)" at graph 0.02, graph 0.95 font ",10"
set xrange [714.286:84000]
set xtics ("1k" 1000, "2k" 2000, "5k" 5000, "10k" 10000, "20k" 20000, "30k" 30000, "40k" 40000, "60k" 60000)
plot "gateway_points.csv" skip 1 using 2:(strcol(1) eq "ringmaster" ? $6/1000 : NaN) with linespoints lw 2 pt 7 lc rgb "#1f77b4" title "engine -> mock p99",      "" skip 1 using 2:(strcol(1) eq "direct" ? $6/1000 : NaN) with linespoints lw 2 pt 5 lc rgb "#d62728" title "mock directly p99",      "" skip 1 using 2:(strcol(1) eq "ringmaster" ? $4/1000 : NaN) with linespoints lw 1 dt 2 pt 6 lc rgb "#1f77b4" title "engine -> mock p50",      "" skip 1 using 2:(strcol(1) eq "direct" ? $4/1000 : NaN) with linespoints lw 1 dt 2 pt 4 lc rgb "#d62728" title "mock directly p50",      "" skip 1 using 2:(sat($2, $3, $10) ? $6/1000 : NaN) with points pt 6 ps 3 lw 2 lc rgb "black" notitle
