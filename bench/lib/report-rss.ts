// Preloaded with `node --import` into a process under measurement: reports its peak RSS and CPU time (user + system, all threads) on exit.
process.on('exit', () => {
  const u = process.resourceUsage();
  process.stderr.write(
    `\nbench-max-rss-kib ${u.maxRSS}\nbench-cpu-ms ${Math.round((u.userCPUTime + u.systemCPUTime) / 1000)}\n`,
  );
});
