// Preloaded with `node --import` beside report-rss.js: reports the CPU time of the main thread alone on exit. In a
// pipeline whose other stages run on other threads, 1 / (main-thread CPU s per GB) bounds its GB/s on an idle machine.
process.on('exit', () => {
  const u = process.threadCpuUsage();
  process.stderr.write(`bench-main-cpu-ms ${Math.round((u.user + u.system) / 1000)}\n`);
});
