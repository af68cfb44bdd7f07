// Draws the "Usage" page's charts with Chart.js (served by the bot: /assets/chart.umd.min.js)
// from the numbers in <script type="application/json" id="usage-data">.
(function () {
  'use strict';
  var block = document.getElementById('usage-data');
  if (!block || typeof Chart === 'undefined') return;
  var data = JSON.parse(block.textContent);
  var colors = { text2video: '#2f6fdb', edit: '#d9822b', other: '#4a9d5b' };
  var base = {
    responsive: true,
    maintainAspectRatio: false,
    animation: false,
    plugins: { legend: { position: 'bottom' } },
  };
  function stacked(id, series, label) {
    var canvas = document.getElementById(id);
    if (!canvas) return;
    new Chart(canvas, {
      type: 'bar',
      data: {
        labels: data.days,
        datasets: [
          { label: 'text-to-video ' + label, data: series.text2video, backgroundColor: colors.text2video },
          { label: 'edit ' + label, data: series.edit, backgroundColor: colors.edit },
        ],
      },
      options: Object.assign({}, base, { scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true } } }),
    });
  }
  function bars(id, series, label) {
    var canvas = document.getElementById(id);
    if (!canvas) return;
    new Chart(canvas, {
      type: 'bar',
      data: { labels: series.labels, datasets: [{ label: label, data: series.gpuSeconds, backgroundColor: colors.other }] },
      options: Object.assign({}, base, { indexAxis: 'y', scales: { x: { beginAtZero: true } } }),
    });
  }
  stacked('jobs-per-day', data.jobs, 'jobs');
  stacked('gpu-per-day', data.gpuSeconds, 'GPU-seconds');
  bars('gpu-by-group', data.groups, 'GPU-seconds');
  bars('gpu-by-user', data.users, 'GPU-seconds');
  document.body.setAttribute('data-charts', 'drawn');
})();
