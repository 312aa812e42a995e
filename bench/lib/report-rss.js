// Preloaded with `node --import` into a process under measurement: reports its peak RSS and CPU time (user + system,
// all threads) on exit. Plain JavaScript: a .ts preload would load Node's type stripper (~12 MiB) into a process that
// runs the CLI bundle (bin/cli-bundle.js) and so none of its own.
process.on('exit', () => {
  const u = process.resourceUsage();
  process.stderr.write(
    `\nbench-max-rss-kib ${u.maxRSS}\nbench-cpu-ms ${Math.round((u.userCPUTime + u.systemCPUTime) / 1000)}\n`,
  );
});
