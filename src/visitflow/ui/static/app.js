// VisitFlow's small amount of browser behaviour, beside htmx:
//  - live lists pause while someone is editing inside them (so polling never eats what they type),
//  - note drafts are kept in localStorage per visit until the note is accepted,
//  - focus goes where a keyboard user expects after a swap, and network trouble is said in words.
(function () {
  'use strict'

  var DRAFT_PREFIX = 'visitflow:draft:'

  var vf = {
    // A live region is being edited when focus is inside it, a disclosure is open in it, a form in it
    // has unsent input, or a box in it is ticked. Polling skips it until that is no longer so.
    editing: function (region) {
      var active = document.activeElement
      // A list marked data-keeps-ticks carries its ticks through a refresh (see keepTicks), so ticks alone
      // do not pause it: the biller keeps seeing newly ready visits while choosing.
      var ticks = region.hasAttribute('data-keeps-ticks') ? '' : ', input[type=checkbox]:checked'
      var busy = (active && active !== region && region.contains(active)) ||
        !!region.querySelector('details[open], form[data-dirty]' + ticks)
      region.toggleAttribute('data-paused', busy)
      return busy
    }
  }
  window.vf = vf

  function storage () {
    try { return window.localStorage } catch (e) { return null }
  }

  function saveDraft (form) {
    var store = storage()
    if (!store) return
    var fields = {}
    Array.prototype.forEach.call(form.elements, function (el) {
      if (el.name && el.tagName === 'TEXTAREA') fields[el.name] = el.value
    })
    try {
      store.setItem(DRAFT_PREFIX + form.dataset.draft, JSON.stringify({ saved: Date.now(), fields: fields }))
    } catch (e) { /* storage full or blocked: the server still keeps what was sent */ }
  }

  function restoreDrafts (root) {
    var store = storage()
    if (!store || !root.querySelectorAll) return
    each(root, '[data-draft-clear]', function (el) { store.removeItem(DRAFT_PREFIX + el.dataset.draftClear) })
    each(root, 'form[data-draft]', function (form) {
      var saved
      try { saved = JSON.parse(store.getItem(DRAFT_PREFIX + form.dataset.draft) || 'null') } catch (e) { saved = null }
      if (!saved || !saved.fields) return
      var restored = false
      Object.keys(saved.fields).forEach(function (name) {
        var el = form.elements.namedItem(name)
        var value = saved.fields[name]
        if (!el || !value || el.value === value) return
        // After a rejected submit the server sends back exactly what was typed: keep that.
        if (form.hasAttribute('data-kept') && el.value.trim()) return
        el.value = value
        restored = true
      })
      if (restored) {
        form.dataset.dirty = '1'
        var status = form.querySelector('[data-draft-status]')
        if (status) status.textContent = 'Restored your unsent draft from this device.'
      }
    })
  }

  function each (root, selector, fn) {
    if (root.matches && root.matches(selector)) fn(root)
    Array.prototype.forEach.call(root.querySelectorAll(selector), fn)
  }

  function markDirty (event) {
    var form = event.target.closest && event.target.closest('form')
    // Filter forms (method="get") only navigate; every other form holds work in progress.
    if (!form || (form.getAttribute('method') || '').toLowerCase() === 'get') return
    form.dataset.dirty = '1'
    if (form.dataset.draft) saveDraft(form)
  }
  document.addEventListener('input', markDirty)
  document.addEventListener('change', markDirty)

  // "Select every visit on this page" ticks the boxes of its own list only.
  document.addEventListener('change', function (event) {
    var all = event.target
    if (!all.matches || !all.matches('[data-select-all]')) return
    var region = all.closest('[data-live]') || document
    Array.prototype.forEach.call(region.querySelectorAll('input[name=visit_ids]'), function (box) {
      box.checked = all.checked
    })
  })

  // Ready to bill: what the biller ticked (visit id -> cents), kept apart from the list. A refresh (perhaps
  // asked for before the last tick) ticks them again; a ticked visit that a refresh moved off this page stays
  // in the release as a hidden field, and the summary says so.
  var ticked = new Map()

  function tickedIn (region) {
    Array.prototype.forEach.call(region.querySelectorAll('input[name=visit_ids]'), function (box) {
      if (box.checked) ticked.set(box.value, parseInt(box.dataset.cents || '0', 10))
      else ticked.delete(box.value)
    })
  }

  function keepTicks (region) {
    Array.prototype.forEach.call(region.querySelectorAll('input[name=visit_ids]'), function (box) {
      if (!ticked.has(box.value)) return
      box.checked = true
      ticked.set(box.value, parseInt(box.dataset.cents || '0', 10))  // the amount as the server says now
    })
    showSelection(region)
  }

  function dollars (cents) {
    return '$' + (cents / 100).toLocaleString('en-US', { minimumFractionDigits: 2, maximumFractionDigits: 2 })
  }

  function showSelection (region) {
    var boxes = region.querySelectorAll('input[name=visit_ids]')
    var here = new Set()
    var checked = 0
    Array.prototype.forEach.call(boxes, function (box) {
      here.add(box.value)
      var row = box.closest('tr')
      if (row) row.classList.toggle('selected', box.checked)
      if (box.checked) checked += 1
    })
    var all = region.querySelector('[data-select-all]')
    if (all) all.checked = boxes.length > 0 && checked === boxes.length
    var elsewhere = document.querySelector('[data-ticked-elsewhere]')
    var away = 0
    var cents = 0
    if (elsewhere) elsewhere.textContent = ''
    ticked.forEach(function (amount, id) {
      cents += amount
      if (here.has(id)) return
      away += 1
      if (!elsewhere) return
      var input = document.createElement('input')
      input.type = 'hidden'
      input.name = 'visit_ids'
      input.value = id
      elsewhere.appendChild(input)
    })
    var summary = document.querySelector('[data-selection-summary]')
    if (!summary) return
    var count = ticked.size
    summary.textContent = count
      ? count + ' visit' + (count === 1 ? '' : 's') + ' ticked, ' + dollars(cents) + ' to release' +
        (away ? ' (' + away + ' not on this page).' : '.')
      : 'Tick the visits to release.'
  }

  document.addEventListener('change', function (event) {
    var region = event.target.closest && event.target.closest('[data-keeps-ticks]')
    if (!region) return
    tickedIn(region)
    showSelection(region)
  })

  document.addEventListener('click', function (event) {
    var close = event.target.closest && event.target.closest('[data-dismiss]')
    if (close) {
      var flash = close.closest('.flash')
      if (flash) flash.remove()
    }
  })

  function flash (message, tone) {
    var area = document.getElementById('flash')
    if (!area) return
    area.innerHTML = ''
    var box = document.createElement('div')
    box.className = 'flash flash-' + (tone || 'ok')
    if (tone === 'error') box.setAttribute('role', 'alert')
    var p = document.createElement('p')
    p.textContent = message
    box.appendChild(p)
    area.appendChild(box)
  }

  function afterLoad (root) {
    restoreDrafts(root)
    if (!root.querySelector) return
    each(root, '[data-keeps-ticks]', keepTicks)
    // A form that came back with problems: put the cursor on the first one.
    var invalid = root.querySelector('[aria-invalid="true"]')
    if (invalid && root !== document.body) { invalid.focus(); return }
    var target = root.matches && root.matches('[data-focus]') ? root : root.querySelector('[data-focus]')
    if (target) target.focus()
  }

  var offline = false
  function wire () {
    if (!window.htmx) {
      restoreDrafts(document)
      return
    }
    window.htmx.onLoad(afterLoad)
    document.body.addEventListener('htmx:beforeSwap', function (event) {
      // A live list's refresh that comes back after someone began using the list (opened a row's form while it
      // was on its way) is dropped: swapping it in would close what they opened. The next one comes when done.
      var live = event.detail.requestConfig && event.detail.requestConfig.elt
      if (live && live.hasAttribute && live.hasAttribute('data-live') && event.detail.target === live &&
          vf.editing(live)) {
        event.detail.shouldSwap = false
        return
      }
      // A release answered: what was ticked is released or told why not, so the new list starts unticked.
      var elt = event.detail.requestConfig && event.detail.requestConfig.elt
      if (elt && elt.id === 'release-form' && event.detail.xhr.status === 200) ticked.clear()
    })
    document.body.addEventListener('htmx:sendError', function () {
      if (!offline) flash('VisitFlow cannot be reached right now. What you typed is kept; try again in a moment.', 'error')
      offline = true
    })
    document.body.addEventListener('htmx:afterRequest', function (event) {
      if (event.detail.successful && offline) {
        offline = false
        var area = document.getElementById('flash')
        if (area) area.innerHTML = ''
      }
    })
    document.body.addEventListener('htmx:responseError', function (event) {
      // Our server answers errors with a message of its own (retargeted to #flash); anything else gets words here.
      var xhr = event.detail.xhr
      if (xhr && !xhr.getResponseHeader('HX-Retarget')) {
        flash('Something went wrong (' + xhr.status + '). Nothing you typed is lost; try again.', 'error')
      }
    })
  }
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', wire)
  else wire()
})()
