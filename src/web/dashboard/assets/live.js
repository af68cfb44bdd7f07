// Live updates of the "Now" page (Server-Sent Events from /live). A progress event moves one
// job's bar (and, when it carries one, shows the job's newest preview image); a refresh replaces the live section and gives the focus back to the same control.
(function () {
  'use strict';
  var section = document.getElementById('now-live');
  if (!section || typeof EventSource === 'undefined') return;
  var source = new EventSource('/live');
  source.addEventListener('progress', function (message) {
    var data = JSON.parse(message.data);
    var bar = document.getElementById('progress-' + data.jobId);
    var text = document.getElementById('progress-text-' + data.jobId);
    if (bar) {
      bar.max = data.total;
      bar.value = data.step;
    }
    if (text) text.textContent = data.text;
    if (data.preview && bar) {
      var image = document.getElementById('preview-' + data.jobId);
      if (!image) {
        image = document.createElement('img');
        image.id = 'preview-' + data.jobId;
        image.className = 'preview';
        bar.parentNode.insertBefore(image, bar);
      }
      image.width = data.preview.width;
      image.height = data.preview.height;
      image.alt = data.preview.alt;
      image.src = data.preview.url;
    }
  });
  source.addEventListener('refresh', function (message) {
    var data = JSON.parse(message.data);
    var current = document.getElementById('now-live');
    if (!current) return;
    var focused = document.activeElement && current.contains(document.activeElement) ? document.activeElement.id : '';
    var holder = document.createElement('div');
    holder.innerHTML = data.html;
    var fresh = holder.firstElementChild;
    if (!fresh) return;
    current.replaceWith(fresh);
    if (focused) {
      var again = document.getElementById(focused);
      if (again) again.focus();
    }
    document.body.setAttribute('data-live-refreshes', String(Number(document.body.getAttribute('data-live-refreshes') || '0') + 1));
  });
  source.addEventListener('open', function () {
    document.body.setAttribute('data-live', 'connected');
  });
  source.addEventListener('error', function () {
    document.body.setAttribute('data-live', 'reconnecting');
  });
})();
