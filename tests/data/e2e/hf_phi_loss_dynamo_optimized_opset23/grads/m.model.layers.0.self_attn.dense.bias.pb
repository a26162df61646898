 B%m.model.layers.0.self_attn.dense.biasJ€¸ì^<0Ù<¬ÿÿ<
G=¿‰-¼ìf³<ƒ‡<Ðy&<´‹’¼oà”¼4ÚŠ<¢œ¼BGÿ<àt˜¼2ôé¼5-î<{e¶<fkØ¼RÐX¼láU½oþ½]6=œ“:»«p£¼d0G¼™¬Õ<Î¢<Dxh»/+½d>q<K<„¾%½