// Gantry web UI: the only script. Everything works without it except live updates.
// - MLflow-style links (/#/experiments/1/runs/ID) go to the matching page.
// - Logs marked with data-sse follow the run over Server-Sent Events and stop at `end`.
// - A status badge marked with data-status-sse reloads the page when the run ends.
'use strict';

(function () {
  // Marks pages where this script runs (CSS and tests can tell).
  document.documentElement.classList.add('js');
  // MLflow clients print http://HOST/#/experiments/ID/runs/RUN: the fragment never reaches
  // the server, so it is mapped here.
  var hash = window.location.hash;
  if (hash.indexOf('#/') === 0) {
    var target = hash.slice(1);
    if (/^\/(experiments|models|runs|deployments)(\/|$)/.test(target)) {
      var next = document.querySelector('form.login-form input[name=next]');
      if (next) {
        next.value = target;
      } else {
        window.location.replace(target);
        return;
      }
    }
  }

  function follow(el) {
    var url = el.getAttribute('data-sse');
    if (!url || typeof EventSource === 'undefined') return;
    var showStep = el.querySelector('.step') !== null || el.getAttribute('data-show-step') === '1';
    var note = document.getElementById('log-live');
    var source = new EventSource(url);
    source.addEventListener('log', function (ev) {
      var row;
      try { row = JSON.parse(ev.data); } catch (e) { return; }
      var atBottom = el.scrollTop + el.clientHeight >= el.scrollHeight - 4;
      var line = document.createElement('span');
      line.className = 'line ' + (row.stream || '');
      var ts = document.createElement('span');
      ts.className = 'ts';
      ts.textContent = row.ts_ms ? new Date(row.ts_ms).toISOString().slice(11, 19) : '';
      line.appendChild(ts);
      if (showStep) {
        var st = document.createElement('span');
        st.className = 'step';
        st.textContent = '[' + row.step + ']';
        line.appendChild(st);
      }
      var text = row.data || '';
      line.appendChild(document.createTextNode(text.charAt(text.length - 1) === '\n' ? text : text + '\n'));
      el.appendChild(line);
      if (atBottom) el.scrollTop = el.scrollHeight;
    });
    source.addEventListener('end', function (ev) {
      source.close();
      if (note) {
        var status = '';
        try { status = JSON.parse(ev.data).status || ''; } catch (e) { status = ''; }
        note.textContent = 'The run ended' + (status ? ' (' + status + ')' : '') + '.';
      }
      var badge = document.getElementById('run-status');
      if (badge && !badge.getAttribute('data-status-sse')) {
        try {
          var s = JSON.parse(ev.data).status;
          if (s) { badge.textContent = s; badge.className = 'badge status-' + s; }
        } catch (e) { /* keep the badge */ }
      }
    });
    source.addEventListener('error', function () {
      // EventSource reconnects by itself, resuming with Last-Event-ID.
    });
  }

  function watchStatus(el) {
    var url = el.getAttribute('data-status-sse');
    if (!url || typeof EventSource === 'undefined') return;
    var source = new EventSource(url);
    source.addEventListener('end', function () {
      source.close();
      window.location.reload();
    });
  }

  function ready() {
    var logs = document.querySelectorAll('pre.log[data-sse]');
    for (var i = 0; i < logs.length; i++) follow(logs[i]);
    var badges = document.querySelectorAll('[data-status-sse]');
    for (var j = 0; j < badges.length; j++) watchStatus(badges[j]);
    // Forms that ask first (cancel, rollback): the question is in data-confirm.
    var asks = document.querySelectorAll('form[data-confirm]');
    for (var k = 0; k < asks.length; k++) {
      asks[k].addEventListener('submit', function (ev) {
        if (!window.confirm(this.getAttribute('data-confirm'))) ev.preventDefault();
      });
    }
  }

  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', ready);
  } else {
    ready();
  }
})();
