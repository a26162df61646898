 B(m.gpt_neox.layers.0.input_layernorm.biasJ€‰6<Ë6¹ÏM‚¸?gº8íÖ¹®¿·„˜º¸î.9ÂlQ9úDß¸á‘;9„)¹ÚzÊ7#z=¸øh	8q¡E86\9wi‰7ıÒä¸.¥¸¯Ê 9°ì-8!
9wƒ9×9}¹¢âm8}8Uğ¹vø8BªÊ¸Æa¶.²8