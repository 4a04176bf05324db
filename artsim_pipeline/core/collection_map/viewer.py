"""The page that draws a chunked collection map (:mod:`.chunks`) progressively.

:func:`viewer_page` is the HTML and :data:`VIEWER_SCRIPT` its script (served as a file of its
own, so the page runs under ``script-src 'self'``). The script fetches ``<base>/data/manifest.json``,
then the chunks, two at a time, and draws each as it arrives straight into the canvas' pixels
(no per-point canvas call, so 470,000 points redraw in a few milliseconds); hover and click fetch
``<base>/api/point/<row>`` (title, maker, nearest works) and thumbnails come from
``<base>/thumb/<row>`` only once few enough points are in view. Text from the server is only
ever set as ``textContent``; landing pages must be http(s).

For tests and benchmarks the script keeps counters in ``window.artsimMap``: ``firstDrawMs``
(``performance.now()`` when the first chunk was drawn), ``drawnPoints``, ``loadedChunks``,
``thumbsRequested``, ``thumbsLoaded``, ``detailsFetched``, and ``screenOf(row)``.
"""

from __future__ import annotations

import html

from artsim_pipeline.core.collection_map import MAP_CSS

MAP_BASE = "/map"


def viewer_page(title: str = "artsim collection map", base: str = MAP_BASE) -> str:
    """The viewer's HTML (the title escaped; ``base`` is where the map's routes are mounted)."""
    if not base.startswith("/") or any(c in base for c in "\"'<>& "):
        raise ValueError("base must be an absolute path without markup characters")
    return _PAGE.replace("%%TITLE%%", html.escape(title)).replace("%%BASE%%", base)


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>%%TITLE%%</title>
<style>
""" + MAP_CSS + """#side img.thumb{max-width:100%;max-height:200px;display:block;margin:6px 0}
</style>
</head>
<body data-base="%%BASE%%">
<div id="bar"><h1>%%TITLE%%</h1><span class="sub" id="status">loading…</span>
<label>colour by <select id="colour"></select></label>
<button id="reset" type="button">reset view</button></div>
<div id="wrap"><canvas id="map"></canvas></div>
<div id="side"><div id="detail"><p class="muted">Hover a point for its title and maker; click it to list its nearest works. Drag to pan, scroll to zoom: thumbnails appear once few works are in view.</p></div><h2>Legend</h2><div id="legend"></div></div>
<div id="tip"></div>
<script src="%%BASE%%/viewer.js"></script>
</body>
</html>
"""

VIEWER_SCRIPT = r"""(function(){
"use strict";
var BASE=document.body.getAttribute("data-base")||"/map";
var canvas=document.getElementById("map"), ctx=canvas.getContext("2d");
var tip=document.getElementById("tip"), detail=document.getElementById("detail"), status=document.getElementById("status");
var legend=document.getElementById("legend"), colourSel=document.getElementById("colour");
var PALETTE=["#1f77b4","#ff7f0e","#2ca02c","#d62728","#9467bd","#8c564b","#e377c2","#17becf","#bcbd22","#7f7f7f","#393b79","#e7969c","#637939","#8c6d31","#843c39","#7b4173","#3182bd","#31a354","#756bb1"];
var OTHER="#c8c8c8", THUMB_MAX=300, GRID=128, HIT_PX=10, PARALLEL=2;
var M=null, VERSION="", chunks=[], next=0, inFlight=0;
var view={s:1,tx:0,ty:0}, W=0, H=0, dpr=window.devicePixelRatio||1, fitScale=1;
var field=null, lut=null, css=[], img=null, img32=null, visible=[];
var selected=null, hover=null, thumbs={}, cache={};
var api=window.artsimMap={firstDrawMs:null,drawnPoints:0,loadedChunks:0,thumbsRequested:0,thumbsLoaded:0,detailsFetched:0,error:null};
function el(tag,text,cls){var e=document.createElement(tag);if(text!=null)e.textContent=text;if(cls)e.className=cls;return e;}
function clear(node){while(node.firstChild)node.removeChild(node.firstChild);}
function rgb(hex){var v=parseInt(hex.slice(1),16);return [(v>>16)&255,(v>>8)&255,v&255];}
function hsl(h,s,l){var a=s*Math.min(l,1-l);function f(n){var k=(n+h/30)%12;return Math.round(255*(l-a*Math.max(-1,Math.min(k-3,9-k,1))));}return [f(0),f(8),f(4)];}
function css3(c){return "rgb("+c[0]+","+c[1]+","+c[2]+")";}
function pack(c){return ((255<<24)|(c[2]<<16)|(c[1]<<8)|c[0])>>>0;}
function setStatus(){
  var s=M.n.toLocaleString()+" works"+(M.method?" · projection: "+M.method:"");
  if(api.loadedChunks<M.chunks.length)s+=" · loading "+api.loadedChunks+"/"+M.chunks.length;
  status.textContent=s;
}
function fit(){
  var b=M.bounds, spanX=(b[2]-b[0])||1, spanY=(b[3]-b[1])||1, pad=24;
  view.s=Math.min((W-2*pad)/spanX,(H-2*pad)/spanY);
  view.tx=(W-view.s*(b[0]+b[2]))/2; view.ty=(H+view.s*(b[1]+b[3]))/2; fitScale=view.s;
}
function resize(){
  var r=canvas.parentNode.getBoundingClientRect(), first=!W;
  W=Math.max(50,r.width); H=Math.max(50,r.height);
  canvas.width=Math.round(W*dpr); canvas.height=Math.round(H*dpr); img=null;
  if(first&&M)fit(); schedule();
}
function setField(name){
  field=name; var c=M.colourBy[name], all=(name==="museum"), i;
  lut=new Uint32Array(c.dtype==="uint8"?256:65536); css=[];
  var other=rgb(OTHER); lut.fill(pack(other));
  for(i=0;i<c.names.length;i++){var col=i<PALETTE.length?rgb(PALETTE[i]):(all?hsl((i*137.508)%360,.6,.45):other);css.push(css3(col));lut[i]=pack(col);}
  clear(legend);
  var shown=all?c.names.length:Math.min(c.names.length,PALETTE.length);
  for(i=0;i<shown;i++){var row=el("div"),sw=el("span",null,"sw");sw.style.background=css[i];row.appendChild(sw);row.appendChild(el("span",c.names[i]));legend.appendChild(row);}
  var rest=el("div"),sw2=el("span",null,"sw");sw2.style.background=OTHER;rest.appendChild(sw2);rest.appendChild(el("span",c.names.length>shown?"other / unknown":"unknown"));legend.appendChild(rest);
  schedule();
}
var pending=false;
function schedule(){if(!pending){pending=true;requestAnimationFrame(function(){pending=false;draw();});}}
function sx(x){return view.tx+view.s*x;}
function sy(y){return view.ty-view.s*y;}
function draw(){
  if(!M||!W)return;
  var cw=canvas.width, ch=canvas.height;
  if(!img){img=ctx.createImageData(cw,ch);img32=new Uint32Array(img.data.buffer);}
  img32.fill(0);
  var zoom=view.s/fitScale, size=Math.max(2,Math.min(8,Math.round((zoom>1?1+Math.log(zoom)/Math.LN2:1)*2*dpr)));
  var s=view.s*dpr, tx=view.tx*dpr, ty=view.ty*dpr, count=0, half=size>>1;
  visible=[];
  for(var k=0;k<chunks.length;k++){
    var c=chunks[k], X=c.x, Y=c.y, C=c.codes[field], n=c.n;
    for(var i=0;i<n;i++){
      var px=(tx+s*X[i]-half)|0, py=(ty-s*Y[i]-half)|0;
      if(px<0||py<0||px>cw-size||py>ch-size)continue;
      count++; if(count<=THUMB_MAX+1)visible.push(k,i);
      var col=lut[C[i]], base=py*cw+px;
      for(var dy=0;dy<size;dy++){for(var dx=0;dx<size;dx++)img32[base+dx]=col;base+=cw;}
    }
  }
  ctx.putImageData(img,0,0);
  api.drawnPoints=count;
  ctx.save(); ctx.setTransform(dpr,0,0,dpr,0,0);
  if(count<=THUMB_MAX)drawThumbs();
  if(selected){
    ctx.strokeStyle="rgba(0,0,0,.4)";ctx.lineWidth=1;ctx.beginPath();
    selected.neighbours.forEach(function(nb){ctx.moveTo(sx(selected.x),sy(selected.y));ctx.lineTo(sx(nb.x),sy(nb.y));});
    ctx.stroke(); ring(selected.x,selected.y,"#000",2.5);
    selected.neighbours.forEach(function(nb){ring(nb.x,nb.y,"#444",1.2);});
  }
  if(hover)ring(hover.x,hover.y,"#d00",2);
  ctx.restore();
  if(api.firstDrawMs===null&&chunks.length){api.firstDrawMs=performance.now();}
}
function ring(x,y,colour,width){ctx.strokeStyle=colour;ctx.lineWidth=width;ctx.beginPath();ctx.arc(sx(x),sy(y),7,0,6.2832);ctx.stroke();}
function drawThumbs(){
  var size=Math.max(24,Math.min(96,view.s/fitScale*4));
  for(var v=0;v<visible.length;v+=2){
    var c=chunks[visible[v]], i=visible[v+1];
    if(!c.thumb||!c.thumb[i])continue;
    var row=c.row[i], im=thumbs[row];
    if(!im){im=new Image();im.onload=function(){api.thumbsLoaded++;schedule();};im.src=BASE+"/thumb/"+row+VERSION;thumbs[row]=im;api.thumbsRequested++;}
    if(!im.complete||!im.naturalWidth)continue;
    var ar=im.naturalWidth/im.naturalHeight, w=ar>=1?size:size*ar, h=ar>=1?size/ar:size, x=sx(c.x[i]), y=sy(c.y[i]);
    ctx.drawImage(im,x-w/2,y-h/2,w,h); ctx.strokeStyle=css[c.codes[field][i]]||OTHER; ctx.lineWidth=2; ctx.strokeRect(x-w/2,y-h/2,w,h);
  }
}
var ARRAYS={float32:Float32Array,uint32:Uint32Array,uint16:Uint16Array,uint8:Uint8Array};
function parse(entry,buf){
  var a=entry.arrays, n=entry.n, c={n:n,codes:{}};
  function arr(name){var s=a[name];return new ARRAYS[s.dtype](buf,s.offset,n);}
  c.x=arr("x"); c.y=arr("y"); c.row=arr("row"); c.thumb=a.thumb?arr("thumb"):null;
  Object.keys(M.colourBy).forEach(function(f){c.codes[f]=arr(f);});
  grid(c); return c;
}
function grid(c){
  var b=M.bounds, gx=GRID/((b[2]-b[0])||1), gy=GRID/((b[3]-b[1])||1), n=c.n, cell=new Uint32Array(n), count=new Uint32Array(GRID*GRID+1), i;
  for(i=0;i<n;i++){var cx=Math.min(GRID-1,Math.max(0,((c.x[i]-b[0])*gx)|0)), cy=Math.min(GRID-1,Math.max(0,((c.y[i]-b[1])*gy)|0));cell[i]=cy*GRID+cx;count[cell[i]+1]++;}
  for(i=0;i<GRID*GRID;i++)count[i+1]+=count[i];
  var at=count.slice(0,GRID*GRID), order=new Uint32Array(n);
  for(i=0;i<n;i++)order[at[cell[i]]++]=i;
  c.start=count; c.order=order; c.gx=gx; c.gy=gy;
}
function nearest(px,py){
  if(!M)return null;
  var b=M.bounds, qx=(px-view.tx)/view.s, qy=(view.ty-py)/view.s, rd=HIT_PX/view.s, best=null, bd=HIT_PX*HIT_PX;
  for(var k=0;k<chunks.length;k++){
    var c=chunks[k];
    var x0=Math.max(0,((qx-rd-b[0])*c.gx)|0), x1=Math.min(GRID-1,((qx+rd-b[0])*c.gx)|0);
    var y0=Math.max(0,((qy-rd-b[1])*c.gy)|0), y1=Math.min(GRID-1,((qy+rd-b[1])*c.gy)|0);
    for(var gy=y0;gy<=y1;gy++)for(var gx=x0;gx<=x1;gx++){
      var cell=gy*GRID+gx;
      for(var p=c.start[cell];p<c.start[cell+1];p++){var i=c.order[p], dx=sx(c.x[i])-px, dy=sy(c.y[i])-py, d=dx*dx+dy*dy;
        if(d<bd){bd=d;best={row:c.row[i],x:c.x[i],y:c.y[i]};}}
    }
  }
  return best;
}
function details(row){
  if(cache[row])return cache[row];
  cache[row]=fetch(BASE+"/api/point/"+row+VERSION).then(function(r){if(r.status===409)throw new Error("the map changed on the server: reload the page");if(!r.ok)throw new Error("point "+row+": "+r.status);api.detailsFetched++;return r.json();});
  cache[row].catch(function(){delete cache[row];});
  return cache[row];
}
function line(d){var parts=[];if(d.maker)parts.push(d.maker);if(d.date)parts.push(d.date);if(d.museum)parts.push(d.museum);return parts.join(" · ");}
function showTip(p,e){
  details(p.row).then(function(d){
    if(!hover||hover.row!==p.row)return;
    clear(tip); tip.appendChild(el("b",d.title||"(untitled)")); var ml=line(d); if(ml)tip.appendChild(el("div",ml));
    tip.style.display="block"; tip.style.left=(e.clientX+14)+"px"; tip.style.top=(e.clientY+14)+"px";
  }).catch(function(){});
}
function showDetail(d){
  clear(detail);
  detail.appendChild(el("h2",d.title||"(untitled)"));
  var ml=line(d); if(ml)detail.appendChild(el("div",ml,"muted"));
  detail.appendChild(el("div",d.artwork_id,"muted"));
  if(d.has_thumb){var im=el("img",null,"thumb");im.alt="";im.src=BASE+"/thumb/"+d.row+VERSION;detail.appendChild(im);}
  if(d.landing_url&&/^https?:\/\//.test(d.landing_url)){var a=el("a","museum page");a.href=d.landing_url;a.target="_blank";a.rel="noopener noreferrer";detail.appendChild(a);}
  detail.appendChild(el("h2","Nearest works"));
  if(!d.neighbours.length){detail.appendChild(el("p","none on this map","muted"));return;}
  var ol=el("ol");
  d.neighbours.forEach(function(nb){var li=el("li",nb.title||"(untitled)");var s=line(nb);if(s)li.appendChild(el("div",s,"muted"));
    li.addEventListener("click",function(){select(nb.row,true);});ol.appendChild(li);});
  detail.appendChild(ol);
}
function select(row,centre){
  details(row).then(function(d){
    selected=d; showDetail(d);
    if(centre){view.tx+=W/2-sx(d.x);view.ty+=H/2-sy(d.y);}
    schedule();
  }).catch(function(e){api.error=String(e);});
}
api.screenOf=function(row){
  for(var k=0;k<chunks.length;k++){var c=chunks[k];for(var i=0;i<c.n;i++)if(c.row[i]===row){var r=canvas.getBoundingClientRect();return [r.left+sx(c.x[i]),r.top+sy(c.y[i])];}}
  return null;
};
function load(){
  while(inFlight<PARALLEL&&next<M.chunks.length){
    var entry=M.chunks[next++]; inFlight++;
    (function(entry){
      fetch(BASE+"/data/chunks/"+entry.file).then(function(r){
        if(r.status===404)throw new Error("the map changed on the server: reload the page");
        if(!r.ok)throw new Error(entry.file+": "+r.status);return r.arrayBuffer();})
      .then(function(buf){chunks.push(parse(entry,buf));api.loadedChunks++;inFlight--;setStatus();draw();load();})
      .catch(function(e){inFlight--;api.error=String(e);status.textContent="could not load the map: "+e;});
    })(entry);
  }
}
var drag=null;
canvas.addEventListener("mousedown",function(e){drag={x:e.clientX,y:e.clientY,tx:view.tx,ty:view.ty,moved:false};});
window.addEventListener("mouseup",function(e){
  if(drag&&!drag.moved){var r=canvas.getBoundingClientRect(), p=nearest(e.clientX-r.left,e.clientY-r.top);
    if(p)select(p.row,false);else{selected=null;schedule();}}
  drag=null;});
canvas.addEventListener("mousemove",function(e){
  var r=canvas.getBoundingClientRect(), px=e.clientX-r.left, py=e.clientY-r.top;
  if(drag){var dx=e.clientX-drag.x, dy=e.clientY-drag.y;if(Math.abs(dx)+Math.abs(dy)>3)drag.moved=true;
    if(drag.moved){view.tx=drag.tx+dx;view.ty=drag.ty+dy;tip.style.display="none";schedule();return;}}
  var p=nearest(px,py);
  if((p&&p.row)!==(hover&&hover.row)){hover=p;schedule();}
  if(!p){tip.style.display="none";return;}
  showTip(p,e);
});
canvas.addEventListener("mouseleave",function(){hover=null;tip.style.display="none";schedule();});
canvas.addEventListener("wheel",function(e){
  e.preventDefault(); var r=canvas.getBoundingClientRect(), px=e.clientX-r.left, py=e.clientY-r.top;
  var f=Math.exp(-e.deltaY*0.0015); view.tx=px-(px-view.tx)*f; view.ty=py-(py-view.ty)*f; view.s*=f; schedule();
},{passive:false});
document.getElementById("reset").addEventListener("click",function(){if(M){fit();schedule();}});
colourSel.addEventListener("change",function(){setField(colourSel.value);});
window.addEventListener("resize",resize);
fetch(BASE+"/data/manifest.json",{cache:"no-cache"}).then(function(r){if(!r.ok)throw new Error("manifest: "+r.status);return r.json();})
.then(function(manifest){
  M=manifest;
  VERSION="?map="+encodeURIComponent(manifest.details||"");
  Object.keys(M.colourBy).forEach(function(name){var o=el("option",name);o.value=name;colourSel.appendChild(o);});
  resize(); fit(); setStatus(); setField(Object.keys(M.colourBy)[0]); load();
}).catch(function(e){api.error=String(e);status.textContent="could not load the map: "+e;});
})();
"""
