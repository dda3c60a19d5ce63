"""Research probe: AdaBN (re-estimated normalisation statistics) for an unseen lab, written into the ONNX file.

    python -m training.analysis.adabn_probe MODEL SOURCE_FOLDER TARGET_POOL TARGET_EVAL SCALE N_TARGET
    python -m training.analysis.adabn_probe runs/lolo_bccd/model.onnx blood-cells/TRAIN pbc/train pbc/val 1.0 128

Every Conv whose batch normalisation was folded into it (weight and bias), and every depthwise Conv followed by
its normalisation as Mul/Add constants, is re-normalised in graph order so that its output has, on the target
lab's images, the per-channel mean and spread it had on the source lab's; each is folded back into the
constants, so the result is an ordinary model file. Unlabelled target images only. Then it scores the model
before and after on TARGET_EVAL through the app's loader, and writes /tmp/adabn_model.onnx (which
training.analysis.adapt_benchmark --model can take as a base). Measured and not shipped: see
docs/research/site_adaptation.md.
"""
import sys, time, numpy as np, onnxruntime as ort, json
from pathlib import Path
from hv_desktop.core.onnx_proto import OnnxFile
from hv_desktop.core.model import Model
from hv_desktop.core.preprocess import load_for_model, normalise
from dataclasses import replace
from training.data import list_labelled, shared_root
from training.analysis import adapt_benchmark as B
data=shared_root()/'data'
model_path, src_rel, tgt_pool, tgt_eval, scale, ntgt = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5]), int(sys.argv[6])
base=Model(model_path); prep=base.info.preprocessing
f=OnnxFile(base.path.read_bytes())
nodes=f.nodes(); inits=set(f.initializer_names)
prod={o:n for n in nodes for o in n[2]}; cons={}
for n in nodes:
    for i in n[1]: cons.setdefault(i,[]).append(n)
# adaptable units: (output tensor, scale init, shift init, kind)
units=[]
for n in nodes:
    if n[0]!='Conv': continue
    if len(n[1])==3 and n[1][1] in inits and n[1][2] in inits:
        units.append((n[2][0], n[1][1], n[1][2], 'conv'))
    else:  # depthwise: Conv -> Mul(const) -> Add(const)
        m=cons.get(n[2][0],[None])[0]
        if m and m[0]=='Mul':
            a=[i for i in m[1] if i in inits]; ad=cons.get(m[2][0],[None])[0]
            if a and ad and ad[0]=='Add':
                c=[i for i in ad[1] if i in inits]
                if c: units.append((ad[2][0], a[0], c[0], 'bn'))
print(len(units), 'units', sum(u[3]=='bn' for u in units), 'bn')
def load(paths,p): return normalise(np.stack([load_for_model(q,base.input_size,p) for q in paths]),p)
def run_stats(fb, x, names):
    pf=OnnxFile(fb)
    for nm in names: pf.add_output(nm)
    s=ort.InferenceSession(pf.to_bytes(), providers=['CPUExecutionProvider'])
    outs=[[] for _ in names]
    for i in range(0,len(x),16):
        for j,o in enumerate(s.run(names,{base.input_name:x[i:i+16]})): outs[j].append(o)
    res=[]
    for o in outs:
        o=np.concatenate(o).astype(np.float64); res.append((o.mean((0,2,3)), o.std((0,2,3))))
    return res
srcp=[p for p,_ in list_labelled(data/src_rel)]; srcp=srcp[::max(1,len(srcp)//200)][:200]
t=time.time(); xs=load(srcp,prep); S=run_stats(f.to_bytes(), xs, [u[0] for u in units]); print('src',time.time()-t)
pool=[p for p,_ in list_labelled(data/tgt_pool)]; rng=np.random.default_rng(0); rng.shuffle(pool); pool=pool[:ntgt]
ptgt=replace(prep, crop_fraction=prep.crop_fraction*scale); xt=load(pool,ptgt)
cur=OnnxFile(f.to_bytes()); t=time.time()
for u,(ms,ss) in zip(units,S):
    (mt,st),=run_stats(cur.to_bytes(), xt, [u[0]])
    ok=(ss>1e-4)&(st>1e-4); k=np.where(ok, ss/np.maximum(st,1e-9), 1.0); k=np.clip(k,0.2,5); mt=np.where(ok,mt,ms)
    A=cur.initializer(u[1]).astype(np.float64); C=cur.initializer(u[2]).astype(np.float64)
    if u[3]=='conv':
        cur.set_initializer(u[1], (A*k.reshape((-1,)+(1,)*(A.ndim-1))).astype(np.float32))
        cur.set_initializer(u[2], ((C-mt)*k+ms).astype(np.float32))
    else:
        shp=A.shape
        cur.set_initializer(u[1], (A*k.reshape(shp)).astype(np.float32)); cur.set_initializer(u[2], ((C-mt.reshape(C.shape))*k.reshape(C.shape)+ms.reshape(C.shape)).astype(np.float32))
print('sequential', time.time()-t)
meta=json.loads(cur.metadata()['hematovision']); meta['preprocessing']=dict(meta['preprocessing'], crop_fraction=ptgt.crop_fraction)
cur.set_metadata('hematovision', json.dumps(meta))
out=Path('/tmp/adabn_model.onnx'); out.write_bytes(cur.to_bytes())
ev=list_labelled(data/tgt_eval)[::2]
for name,mp in (('before',model_path),('adabn',str(out))):
    m=Model(mp); print(name, B._score(m,[p for p,_ in ev],[y for _,y in ev]))
